"""torchvision ViT interop: `VisionTransformer` weights on the equivalent Euler spec over [attention, ffn].

Each torchvision encoder layer is y += MHSA(LN_1 y); y += MLP(LN_2 y) (Dosovitskiy et al. 2021), i.e. two
Euler evaluations of an interleaved module: layer i is evaluations 2i (attention) and 2i + 1 (ffn). Evaluation
j of a stage whose tableau has s stages lives at `block{j//s}.eval{j%s+1}`, so the same weights restack as
midpoint or RK4 blocks. Nothing is ever downloaded: pass a model whose weights you loaded yourself.
"""

from __future__ import annotations

import re
from typing import cast

from torch import fx, nn

from rkcompile.artifact import state_dict_mismatch
from rkcompile.compiler import build
from rkcompile.errors import ArtifactError

__all__ = ["VIT_ARCHITECTURES", "vit_spec_data", "from_torchvision_vit", "vit_state_dict_to_rkcompile"]

VIT_ARCHITECTURES = ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14")

_LAYER = re.compile(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)")
_LAYER_PARTS = {  # torchvision EncoderBlock key → (evaluation offset, rkcompile layer key)
    "ln_1.weight": (0, "ln.weight"), "ln_1.bias": (0, "ln.bias"),
    "self_attention.in_proj_weight": (0, "qkv.weight"), "self_attention.in_proj_bias": (0, "qkv.bias"),
    "self_attention.out_proj.weight": (0, "proj.weight"), "self_attention.out_proj.bias": (0, "proj.bias"),
    "ln_2.weight": (1, "ln.weight"), "ln_2.bias": (1, "ln.bias"),
    "mlp.0.weight": (1, "fc1.weight"), "mlp.0.bias": (1, "fc1.bias"),
    "mlp.3.weight": (1, "fc2.weight"), "mlp.3.bias": (1, "fc2.bias"),
}
_OTHER = {"conv_proj.weight": "stem.conv_proj.weight", "conv_proj.bias": "stem.conv_proj.bias",
          "class_token": "stem.cls.token", "encoder.pos_embedding": "stem.pos.embedding",
          "encoder.ln.weight": "head.ln.weight", "encoder.ln.bias": "head.ln.bias",
          "heads.head.weight": "head.fc.weight", "heads.head.bias": "head.fc.bias"}


def vit_spec_data(tv: nn.Module, name: str = "vit") -> dict:
    """The Euler spec (plain data) equal to a torchvision VisionTransformer: patch stem with class token, 2 x layers
    evaluations of [attention, ffn] (LayerNorm eps 1e-6, GELU), and the class-token head."""
    if getattr(tv, "representation_size", None) is not None or tv.conv_proj.__class__ is not nn.Conv2d:
        raise ArtifactError("ViTs with a pre-logits representation layer or a conv stem have no spec here")
    layers = cast(nn.Sequential, cast(nn.Module, tv.encoder).layers)
    heads = layers[0].num_heads
    dropout = {"dropout": tv.dropout} if tv.dropout else {}
    attention_dropout = {"attention_dropout": tv.attention_dropout} if tv.attention_dropout else {}
    return {
        "name": name,
        "input": {"channels": 3, "height": tv.image_size, "width": tv.image_size},
        "stem": {"kind": "patch", "patch": tv.patch_size, "features": tv.hidden_dim, **dropout},
        "stages": [{
            "module": [{"kind": "attention", "heads": heads, "eps": 1e-6, **attention_dropout, **dropout},
                       {"kind": "ffn", "hidden": tv.mlp_dim, "act": "gelu", "eps": 1e-6, **dropout}],
            "integrator": "euler",
            "evaluations": 2 * len(layers),
        }],
        "output": {"classes": tv.num_classes, "pool": "cls", "norm": "layernorm", "eps": 1e-6},
    }


def from_torchvision_vit(tv_model_or_name: nn.Module | str, spec=None) -> fx.GraphModule:
    """Compile the spec equal to a torchvision ViT (a name builds it with weights=None) and load its weights."""
    name = "vit"
    if isinstance(tv_model_or_name, str):
        import torchvision

        name = f"{tv_model_or_name.replace('_', '-')}-imagenet"
        tv = getattr(torchvision.models, name)(weights=None)  # random init: weights are never downloaded
    else:
        tv = tv_model_or_name
    import yaml

    from rkcompile.load import parse_spec

    model = build(spec if spec is not None else parse_spec(yaml.safe_dump(vit_spec_data(tv, name), sort_keys=False)))
    model.load_state_dict(vit_state_dict_to_rkcompile(tv.state_dict(), model), strict=True)
    return model.train(tv.training)


def vit_state_dict_to_rkcompile(sd: dict, model: fx.GraphModule) -> dict:
    """Rename a torchvision ViT state_dict's keys to `model`'s (checked: every key and shape must fit)."""
    spec = getattr(model, "spec", None)
    if spec is None or len(spec.stages) != 1 or spec.stages[0].weights.kind != "per-evaluation":
        raise ArtifactError("torchvision ViT weights map onto one per-evaluation stage over [attention, ffn]")
    stages = spec.stages[0].tableau.stages
    out = {}
    for key, value in sd.items():
        match = _LAYER.fullmatch(key)
        if match and match.group(2) in _LAYER_PARTS:
            offset, part = _LAYER_PARTS[match.group(2)]
            j = 2 * int(match.group(1)) + offset
            out[f"stage0.block{j // stages}.eval{j % stages + 1}.{part}"] = value
        elif key in _OTHER:
            out[_OTHER[key]] = value
        else:
            raise ArtifactError(f"torchvision ViT key '{key}' has no counterpart in spec '{spec.name}'")
    problem = state_dict_mismatch(model, out)
    if problem:
        raise ArtifactError(f"the torchvision weights do not fit spec '{spec.name}': {problem}")
    return out
