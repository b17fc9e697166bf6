"""torchvision interop: the ImageNet specs have torchvision's exact parameter counts and, with its weights, its logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torch import nn

from rkcompile.artifact import load, save
from rkcompile.compiler import build
from rkcompile.errors import ArtifactError
from rkcompile.interop import (
    ARCHITECTURES,
    from_torchvision,
    imagenet_spec_data,
    imagenet_spec_path,
    torchvision_state_dict_to_rkcompile,
)
from rkcompile.load import load_spec
from rkcompile.transforms import remanifest

SPECS = Path(__file__).parent.parent / "specs"

# Parameter counts: all three as listed in the
# torchvision model docs (ResNet18/34/50_Weights.IMAGENET1K_V1 meta "num_params").
TORCHVISION_PARAMETERS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


def torchvision_resnet(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A torchvision ResNet with seeded random weights and random BN affine/statistics (never downloaded).

    torchvision's init leaves every BN an identity in eval mode; randomising it makes a swapped bn1/bn2 visible.
    """
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def max_logit_difference(tv: nn.Module, model: nn.Module, size: int) -> float:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return (tv.eval()(x) - model.eval()(x)).abs().max().item()


# ---------------------------------------------------------------- specs
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_spec_has_torchvisions_exact_parameter_count(name: str):
    spec_count = sum(p.numel() for p in build(SPECS / f"{name}-imagenet.yaml").parameters())
    tv_count = sum(p.numel() for p in getattr(torchvision.models, name)(weights=None).parameters())
    assert spec_count == tv_count == TORCHVISION_PARAMETERS[name]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_spec_file_matches_builtin_fallback(name: str):
    path = imagenet_spec_path(name)
    assert path == SPECS / f"{name}-imagenet.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["name"] == path.stem
    assert data == imagenet_spec_data(name)
    assert load_spec(path).stages[-1].blocks == ARCHITECTURES[name][1][-1] - 1


# ---------------------------------------------------------------- key mapping
def renamed(name: str) -> tuple[dict, list]:
    """torchvision key → rkcompile key for `name`, and the rkcompile model's own keys."""
    model = build(SPECS / f"{name}-imagenet.yaml")
    state = torchvision_resnet(name).state_dict()
    mapped = torchvision_state_dict_to_rkcompile(state, model)
    return dict(zip(state, mapped, strict=True)), list(model.state_dict())


def test_key_mapping_resnet18():
    names, own = renamed("resnet18")
    assert names["conv1.weight"] == "stem.conv.weight"
    assert names["bn1.running_var"] == "stem.bn.running_var"
    assert names["layer1.1.conv2.weight"] == "stage0.block1.eval1.conv2.weight"  # no transition in stage 0
    assert names["layer2.0.conv1.weight"] == "stage1.entry.f.conv1.weight"
    assert names["layer2.0.downsample.0.weight"] == "stage1.entry.shortcut.conv.weight"
    assert names["layer2.0.downsample.1.num_batches_tracked"] == "stage1.entry.shortcut.bn.num_batches_tracked"
    assert names["layer2.1.bn2.bias"] == "stage1.block0.eval1.bn2.bias"
    assert names["fc.weight"] == "head.fc.weight"
    assert sorted(names.values()) == sorted(own)


def test_key_mapping_resnet50_first_stage_has_a_transition():
    names, own = renamed("resnet50")
    assert names["layer1.0.conv3.weight"] == "stage0.entry.f.conv3.weight"
    assert names["layer1.0.downsample.0.weight"] == "stage0.entry.shortcut.conv.weight"
    assert names["layer1.2.bn3.weight"] == "stage0.block1.eval1.bn3.weight"
    assert names["layer4.2.conv2.weight"] == "stage3.block1.eval1.conv2.weight"
    assert sorted(names.values()) == sorted(own)


# ---------------------------------------------------------------- logits
@pytest.mark.parametrize("name, size", [("resnet18", 224), ("resnet34", 64)])
def test_logits_equal_torchvision(name: str, size: int):
    tv = torchvision_resnet(name)
    # 64x64 still reaches layer4 at 2x2, so every layer runs; measured max abs diff: 0.0 (same ops, same order)
    assert max_logit_difference(tv, from_torchvision(tv), size) <= 1e-4


@pytest.mark.slow
def test_logits_equal_torchvision_resnet50():
    tv = torchvision_resnet("resnet50")
    assert max_logit_difference(tv, from_torchvision(tv), 224) <= 1e-4  # measured: 0.0, about 3 s on 2 cores


def test_by_name_builds_torchvision_init_without_download():
    torch.manual_seed(3)
    model = from_torchvision("resnet18")
    torch.manual_seed(3)
    tv = torchvision.models.resnet18(weights=None)
    assert model.training and model.spec.name == "resnet18-imagenet"
    assert max_logit_difference(tv, model, 64) <= 1e-4


def test_other_class_count_follows_the_torchvision_head():
    tv = torchvision_resnet("resnet18", num_classes=10)
    model = from_torchvision(tv)
    assert model.spec.output.classes == 10
    assert max_logit_difference(tv, model, 64) <= 1e-4


def test_interop_model_saves_and_loads(tmp_path: Path):
    tv = torchvision_resnet("resnet18")
    loaded = load(save(from_torchvision(tv), tmp_path / "resnet18.pt"))
    assert max_logit_difference(tv, loaded, 64) <= 1e-4


def test_same_weights_rewired_by_another_tableau():
    """HO-ResNet's idea: stage 0's two blocks become one midpoint step of two evaluations."""
    tv = torchvision_resnet("resnet18")
    model = from_torchvision(tv, spec=load_spec(SPECS / "resnet18-imagenet.yaml", {"stages.0.integrator": "midpoint"}))
    state = model.state_dict()
    assert torch.equal(state["stage0.block0.eval2.conv1.weight"], tv.layer1[1].conv1.weight)
    assert max_logit_difference(tv, model, 64) > 1e-2


# ---------------------------------------------------------------- errors
def test_unknown_name():
    with pytest.raises(ArtifactError, match=r"^unknown torchvision ResNet 'resnet19' \(did you mean 'resnet18'\?\); "
                                            r"expected one of resnet18, resnet34, resnet50$"):
        from_torchvision("resnet19")


def test_unsupported_depth():
    with pytest.raises(ArtifactError, match=r"no spec for a torchvision ResNet of bottleneck blocks 3-4-23-3"):
        from_torchvision(torchvision.models.resnet101(weights=None))


def test_wide_resnet_is_refused():
    with pytest.raises(ArtifactError, match=r"grouped or wide torchvision ResNets \(ResNeXt, wide_resnet\)"):
        from_torchvision(torchvision.models.wide_resnet50_2(weights=None))


def test_not_a_resnet():
    with pytest.raises(ArtifactError, match=r"^Linear is not a torchvision ResNet"):
        from_torchvision(nn.Linear(2, 2))
    with pytest.raises(ArtifactError, match=r"^expected a torchvision ResNet or one of resnet18, resnet34, resnet50, "
                                            r"found a dict$"):
        from_torchvision({"conv1.weight": torch.ones(1)})


def test_weights_of_another_depth_do_not_fit():
    with pytest.raises(ArtifactError, match=r"^the torchvision weights do not fit spec 'resnet34-imagenet': "
                                            r"missing key 'stage0\.block2\.eval1\.conv1\.weight' \(and \d+ more\)$"):
        from_torchvision(torchvision_resnet("resnet18"), spec=SPECS / "resnet34-imagenet.yaml")


def test_shared_weights_cannot_take_torchvision_blocks():
    spec = load_spec(SPECS / "resnet18-imagenet.yaml", {"stages.0.weights": "shared"})
    with pytest.raises(ArtifactError, match=r"^stage 0 of spec 'resnet18-imagenet' has 'shared' weights"):
        from_torchvision(torchvision_resnet("resnet18"), spec=spec)


def test_foreign_key():
    model = build(SPECS / "resnet18-imagenet.yaml")
    with pytest.raises(ArtifactError, match=r"^torchvision key 'features\.0\.weight' has no rkcompile counterpart"):
        torchvision_state_dict_to_rkcompile({"features.0.weight": torch.ones(1)}, model)
    with pytest.raises(ArtifactError, match=r"^torchvision key 'layer5\.0\.conv1\.weight' belongs to stage 4, but"):
        torchvision_state_dict_to_rkcompile({"layer5.0.conv1.weight": torch.ones(1)}, model)


# ---------------------------------------------------------------- torchvision ViT
@pytest.mark.parametrize("name, count", [("vit_b_16", 86_567_656), ("vit_b_32", 88_224_232)])
def test_vit_specs_equal_torchvision_and_have_its_parameter_count(name, count):
    from rkcompile.interop_vit import vit_spec_data

    path = Path(__file__).parents[1] / "specs" / f"{name.replace('_', '-')}-imagenet.yaml"
    tv = getattr(torchvision.models, name)(weights=None)
    assert yaml.safe_load(path.read_text()) == vit_spec_data(tv, path.stem)
    assert sum(p.numel() for p in tv.parameters()) == count
    assert sum(p.numel() for p in build(path).parameters()) == count


def test_vit_b_16_logits_are_identical_and_restack_as_midpoint():
    torch.manual_seed(0)
    tv = torchvision.models.vit_b_16(weights=None, image_size=32).eval()  # small images: a fast CPU forward
    model = from_torchvision(tv).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - tv(x)).abs().max().item() <= 1e-4
    midpoint = remanifest(model, integrator="midpoint")
    assert sum(p.numel() for p in midpoint.parameters()) == sum(p.numel() for p in tv.parameters())


def test_small_vit_with_dropout_maps_and_bad_vits_are_errors():
    from torchvision.models.vision_transformer import VisionTransformer

    tv = VisionTransformer(image_size=16, patch_size=4, num_layers=3, num_heads=2, hidden_dim=8, mlp_dim=12,
                           dropout=0.1, attention_dropout=0.1, num_classes=5).eval()
    model = from_torchvision(tv).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert (model(x) - tv(x)).abs().max().item() <= 1e-5
    assert model.spec.stages[0].total_evaluations == 6 and model.spec.stem.dropout == 0.1
    pre_logits = VisionTransformer(image_size=16, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=12,
                                   representation_size=4)
    with pytest.raises(ArtifactError, match="pre-logits representation layer"):
        from_torchvision(pre_logits)
