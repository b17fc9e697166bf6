"""torchvision interop: torchvision ResNet weights mapped onto the equivalent Euler spec (specs/resnet*-imagenet.yaml).

torchvision's `layerX.k` is the k-th residual block of stage X-1. When `layerX.0` has a `downsample`, it is
the stage's transition entry (`stageN.entry.f.*`, shortcut `stageN.entry.shortcut.{conv,bn}`) and the
remaining blocks are the stage's evaluations; otherwise (resnet18/34's first stage) every block is one.
Evaluation j of a per-evaluation stage whose tableau has s stages lives at `block{j//s}.eval{j%s+1}`: for
Euler that is `block{j}.eval1`, and for another tableau the same weights are rewired as HO-ResNet does.
Nothing is ever downloaded: pass a torchvision model whose weights you loaded yourself.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from torch import fx, nn

from rkcompile import naming
from rkcompile.artifact import state_dict_mismatch
from rkcompile.compiler import build
from rkcompile.errors import ArtifactError, did_you_mean
from rkcompile.spec import PerEvaluation, Spec, Transition

__all__ = ["ARCHITECTURES", "from_torchvision", "torchvision_state_dict_to_rkcompile", "imagenet_spec_path",
           "imagenet_spec_data"]

SPECS = Path(__file__).parents[1] / "specs"

# name -> (residual module, blocks per stage), from torchvision.models.resnet (He et al. 2016, Table 1)
ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
_BLOCK_CLASSES = {"BasicBlock": "basic", "Bottleneck": "bottleneck"}


def from_torchvision(tv_model_or_name: nn.Module | str, spec: Spec | str | Path | None = None) -> fx.GraphModule:
    """Compile the Euler spec equivalent to a torchvision ResNet or ViT and load its weights (a name builds
    weights=None); ViTs go to `interop_vit`."""
    if (tv_model_or_name.startswith("vit_") if isinstance(tv_model_or_name, str)
            else type(tv_model_or_name).__name__ == "VisionTransformer"):
        from rkcompile.interop_vit import from_torchvision_vit

        return from_torchvision_vit(tv_model_or_name, spec)
    if isinstance(tv_model_or_name, str):
        name = _known(tv_model_or_name)
        import torchvision

        tv = getattr(torchvision.models, name)(weights=None)  # random init: weights are never downloaded
    elif isinstance(tv_model_or_name, nn.Module):
        tv, name = tv_model_or_name, None
    else:
        raise ArtifactError(f"expected a torchvision ResNet or one of {', '.join(ARCHITECTURES)}, "
                            f"found a {type(tv_model_or_name).__name__}")
    if spec is None:
        name = name or _architecture(tv)
        classes = tv.fc.out_features
        overrides = {"output.classes": classes} if classes != 1000 else None
        path = imagenet_spec_path(name)
        model = build(path if path.is_file() else yaml.safe_dump(imagenet_spec_data(name), sort_keys=False),
                      overrides)
    else:
        model = build(spec)
    model.load_state_dict(torchvision_state_dict_to_rkcompile(tv.state_dict(), model), strict=True)
    return model.train(tv.training)


def torchvision_state_dict_to_rkcompile(sd: dict, model: fx.GraphModule) -> dict:
    """Rename a torchvision ResNet state_dict's keys to `model`'s (checked: every key and shape must fit)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, Spec):
        raise ArtifactError("torchvision weights map only onto a model built by rkcompile (it has no .spec)")
    out = {}
    for key, value in sd.items():
        out[_rename(key, spec)] = value
    problem = state_dict_mismatch(model, out)
    if problem:
        raise ArtifactError(f"the torchvision weights do not fit spec '{spec.name}': {problem}")
    return out


def imagenet_spec_path(name: str) -> Path:
    """Path of the spec file for a torchvision ResNet name (specs/<name>-imagenet.yaml in the repository)."""
    return SPECS / f"{_known(name)}-imagenet.yaml"


def imagenet_spec_data(name: str) -> dict:
    """The spec of a torchvision ResNet as plain data: the fallback when the specs/ folder is not installed."""
    module, blocks = ARCHITECTURES[_known(name)]
    widths = (64, 128, 256, 512) if module == "basic" else (256, 512, 1024, 2048)
    stages = []
    for n, (count, width) in enumerate(zip(blocks, widths, strict=True)):
        stage: dict = {"channels": width}
        if n > 0 or module == "bottleneck":  # torchvision adds a downsample wherever stride or width changes
            stage["entry"] = {"kind": "transition", "stride": 1 if n == 0 else 2, "shortcut": "conv"}
            count -= 1
        stage.update(module={"kind": module, "form": "post"}, integrator="euler", evaluations=count)
        stages.append(stage)
    return {
        "name": f"{name}-imagenet", "seed": 0, "input": {"channels": 3, "height": 224, "width": 224},
        "stem": {"kind": "conv", "channels": 64, "kernel": 7, "stride": 2,
                 "pool": {"kind": "maxpool", "kernel": 3, "stride": 2}},
        "stages": stages, "output": {"classes": 1000},
    }


# ---------------------------------------------------------------- helpers
_BLOCK_KEY = re.compile(r"layer(\d+)\.(\d+)\.(.+)")


def _rename(key: str, spec: Spec) -> str:
    """The rkcompile name of one torchvision state_dict key."""
    head, _, rest = key.partition(".")
    if head in ("conv1", "bn1"):
        return f"{naming.STEM}.{head[:-1] if head == 'conv1' else 'bn'}.{rest}"
    if head == "fc":
        return f"{naming.HEAD}.fc.{rest}"
    m = _BLOCK_KEY.fullmatch(key)
    if m is None:
        raise ArtifactError(f"torchvision key '{key}' has no rkcompile counterpart (not a ResNet state_dict?)")
    n, k, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
    if not 0 <= n < len(spec.stages):
        raise ArtifactError(f"torchvision key '{key}' belongs to stage {n}, but spec '{spec.name}' has "
                            f"{len(spec.stages)} stages")
    stage = spec.stages[n]
    rest = re.sub(r"^downsample\.0\.", "shortcut.conv.", re.sub(r"^downsample\.1\.", "shortcut.bn.", rest))
    if isinstance(stage.entry, Transition):
        if k == 0:
            return f"{naming.entry(n)}.{rest if rest.startswith('shortcut.') else 'f.' + rest}"
        k -= 1
    if not isinstance(stage.weights, PerEvaluation):
        raise ArtifactError(f"stage {n} of spec '{spec.name}' has '{stage.weights.kind}' weights; torchvision "
                            "weights map only onto per-evaluation stages (one set of weights per block)")
    s = stage.tableau.stages
    return f"{naming.evaluation(n, k // s, k % s + 1)}.{rest}"


def _known(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ArtifactError(f"unknown torchvision ResNet '{name}'{did_you_mean(name, ARCHITECTURES)}; "
                            f"expected one of {', '.join(ARCHITECTURES)}")
    return name


def _architecture(tv: nn.Module) -> str:
    """Recognise resnet18/34/50 from a torchvision ResNet's block class and blocks per stage."""
    try:
        layers = [getattr(tv, f"layer{i}") for i in range(1, 5)]
        block = type(layers[0][0]).__name__
        found = (_BLOCK_CLASSES.get(block, block), tuple(len(layer) for layer in layers))
    except (AttributeError, TypeError, IndexError):
        raise ArtifactError(f"{type(tv).__name__} is not a torchvision ResNet (no conv1, layer1..layer4, fc)") from None
    if getattr(tv, "groups", 1) != 1 or getattr(tv, "base_width", 64) != 64:
        raise ArtifactError("grouped or wide torchvision ResNets (ResNeXt, wide_resnet) have no spec here; "
                            f"supported: {', '.join(ARCHITECTURES)}")
    for name, architecture in ARCHITECTURES.items():
        if architecture == found:
            return name
    raise ArtifactError(f"no spec for a torchvision ResNet of {found[0]} blocks {'-'.join(map(str, found[1]))}; "
                        f"supported: {', '.join(ARCHITECTURES)} (pass spec= to map onto your own)")
