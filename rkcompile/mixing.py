"""Evaluations of F whose weights are a combination sum_beta phi_beta(t) theta_beta (a continuous basis).

Each weight tensor of F (conv and linear weights and biases, norm affine parameters, a skip-init scale) is
read with `get_attr` from every coefficient F with a non-zero phi_beta(t) and combined by `torch.mul`/`torch.add`
nodes with Python-constant factors (saving nothing for backward); the layer then runs functionally
(`F.conv2d`, `F.linear`, ...) on the combined tensors, so the analysis sees every node.

BatchNorm's running statistics are coefficients in the same basis (as ContinuousNet's code keeps its state,
Queiruga et al. 2020): in evaluation mode the layer normalizes with r(t) = sum_beta phi_beta(t) r_beta; in
training mode it normalizes with the batch statistics m_t and moves the coefficients by the normalized
least-mean-squares step r_beta += momentum * phi_beta(t) / sum_gamma phi_gamma(t)^2 * (m_t - r(t)), the
smallest change of the coefficients that makes r(t) move exactly as a plain BatchNorm's running average
does — an incremental form of ContinuousNet's least-squares projection of the state onto the basis. With
one piece of weight 1 (piecewise constant) it is PyTorch's own update. A Legendre expansion of the variance
may dip below zero between samples: the combined variance is clamped at 0 there.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import fx, nn

from rkcompile.graphmeta import NodeMeta
from rkcompile.modules import Part, Scale, public
from rkcompile.time_modules import Film, film

__all__ = ["call_mixed", "basis_batch_norm"]

_LINEAR = public(F.linear)  # reads torch.nn.functional.linear in the generated code, not torch._C._nn.linear


def call_mixed(compiler, x: fx.Node, parts: list[Part], mix: tuple[tuple[str, Fraction | float], ...], name: str,
               meta: NodeMeta) -> fx.Node:
    """Emit F's layers with weights combined from the coefficient F's `parts` (at the paths in `mix`)."""
    weights = [float(w) for _, w in mix]
    targets = [target for target, _ in mix]
    for call in parts[0].calls:
        layer_meta = meta.but(layer=call.label or call.name)
        node = f"{name}_{call.name}"
        if call.timed and meta.time is None:
            raise AssertionError(f"{node}: a time-conditioned layer without an evaluation time")
        t = (float(meta.time),) if call.timed and meta.time is not None else ()  # reads t (`conditioning`)
        if call.module is None:
            x = compiler.function(call.function, (x, *t, *call.args), node, layer_meta)
            continue
        module = call.module
        if not any(True for _ in module.parameters()) and not any(True for _ in module.buffers()):
            x = compiler.call_module(f"{targets[0]}.{call.name}", (x,), node, layer_meta)  # dropout, pooling
            continue

        def mixed(param: str, call=call, node=node, layer_meta=layer_meta) -> fx.Node | None:
            if getattr(call.module, param, None) is None:
                return None
            reads = [compiler.get_attr(f"{t}.{call.name}.{param}", layer_meta) for t in targets]
            return combine(compiler, reads, weights, f"{node}_{param}", layer_meta)

        x = _layer(compiler, x, module, mixed, [f"{p}.{call.name}" for p in targets], weights, node, layer_meta, t)
    return x


def combine(compiler, reads: list[fx.Node], weights: list[float], name: str, meta: NodeMeta) -> fx.Node:
    """sum_beta w_beta * read_beta as mul/add nodes with constant factors (w = 1 is not multiplied)."""
    out = reads[0] if weights[0] == 1 else compiler.function(torch.mul, (reads[0], weights[0]), name, meta)
    for read, w in zip(reads[1:], weights[1:]):
        kwargs = {} if w == 1 else {"alpha": w}
        out = compiler.function(torch.add, (out, read), name, meta, kwargs)
    return out


def _layer(compiler, x, module: nn.Module, mixed, paths: list[str], weights: list[float], name: str, meta,
           t: tuple = ()):
    """One layer run functionally on combined weights (`t`: the time a time-conditioned layer also reads)."""
    fn = compiler.function
    if isinstance(module, nn.Conv2d):
        return fn(F.conv2d, (x, mixed("weight"), mixed("bias"), module.stride, module.padding, module.dilation,
                             module.groups), name, meta)
    if isinstance(module, nn.Linear):
        return fn(_LINEAR, (x, mixed("weight"), mixed("bias")), name, meta)
    if isinstance(module, nn.GroupNorm):
        return fn(F.group_norm, (x, module.num_groups, mixed("weight"), mixed("bias"), module.eps), name, meta)
    if isinstance(module, nn.LayerNorm):
        return fn(F.layer_norm, (x, module.normalized_shape, mixed("weight"), mixed("bias"), module.eps), name, meta)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if not module.track_running_stats:
            return fn(F.batch_norm, (x, None, None, mixed("weight"), mixed("bias"), True, 0.0, module.eps), name, meta)
        stats = tuple(tuple(compiler.get_attr(f"{path}.{stat}", meta) for path in paths)
                      for stat in ("running_mean", "running_var", "num_batches_tracked"))
        layer = compiler.get_attr(paths[0], meta)  # read for its mode and constants (training, momentum, eps)
        return fn(basis_batch_norm, (x, mixed("weight"), mixed("bias"), *stats, tuple(weights), layer), name, meta)
    if isinstance(module, Scale):
        return fn(torch.mul, (x, mixed("scale")), name, meta)
    if isinstance(module, Film):  # time-conditioned F (`conditioning`): the map on combined weights
        return fn(film, (x, *t, *(mixed(p) for p in ("weight1", "bias1", "weight2", "bias2")), module.act,
                         module.dim), name, meta)
    # any other layer: its own forward on the combined parameters (buffers from the first coefficient F)
    layer = compiler.get_attr(paths[0], meta)
    params = {key: mixed(key) for key, _ in module.named_parameters()}
    return fn(torch.func.functional_call, (layer, params, (x, *t)), name, meta)


def basis_batch_norm(x: torch.Tensor, weight, bias, means: tuple, variances: tuple, counts: tuple, phi: tuple,
                     layer: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """BatchNorm whose running statistics are sum_beta phi_beta r_beta over the coefficient layers (see above)."""
    if not layer.training:
        mean = sum(p * r for p, r in zip(phi, means))
        var = sum(p * r for p, r in zip(phi, variances)).clamp(min=0)  # a polynomial could dip below 0
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, layer.eps)
    with torch.no_grad():
        dims = [d for d in range(x.dim()) if d != 1]
        count = x.numel() // x.shape[1]
        batch = {id(means): x.mean(dims), id(variances): x.var(dims, correction=1 if count > 1 else 0)}
        momentum = layer.momentum if layer.momentum is not None else 0.1
        step = momentum / sum(p * p for p in phi)
        for stats in (means, variances):
            error = batch[id(stats)] - sum(p * r for p, r in zip(phi, stats))
            for p, r in zip(phi, stats):
                r.add_(error, alpha=step * p)
        for c in counts:
            c.add_(1)
    return F.batch_norm(x, None, None, weight, bias, True, 0.0, layer.eps)
