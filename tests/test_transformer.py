"""Token states and the transformer residual functions: attention, ffn, the parallel block, interleaved cycles."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

import rkcompile
from rkcompile import CompileError, SpecError, analyze, build, parse_spec
from rkcompile.analysis.propagate import meta_input
from rkcompile.tableaux import get_tableau

D, L = 8, 5  # width and length of the small token states


def spec(module, *, input=None, stem=None, output=None, **stage) -> dict:
    """A one-stage spec on tokens {length: L, features: D}."""
    stage = {"module": module, **({"evaluations": 28} if "steps" not in stage else {}), **stage}
    data = {"name": "t", "seed": 0, "input": input or {"length": L, "features": D}, "stages": [stage]}
    if stem is not None:
        data["stem"] = stem
    if output is not None:
        data["output"] = output
    return data


def make(data: dict):
    """Compile a spec given as plain data."""
    return build(parse_spec(yaml.safe_dump(data, sort_keys=False)))


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def sizes(width: int, hidden: int) -> dict[str, int]:
    """|F| of each kind, counted from the layers (LayerNorm 2D; biases on)."""
    return {
        "attention": 2 * width + 3 * width * width + 3 * width + width * width + width,
        "ffn": 2 * width + width * hidden + hidden + hidden * width + width,
        "transformer": 2 * width + width * (3 * width + hidden) + 3 * width + hidden + (width + hidden) * width + width,
    }


MODULES = {"attention": {"kind": "attention", "heads": 2}, "ffn": {"kind": "ffn", "ratio": 3},
           "transformer": {"kind": "transformer", "heads": 4, "ratio": 3}}
SCHEMES = ("euler", "midpoint", "rk4", "verner89")


# ---------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("kind", MODULES)
@pytest.mark.parametrize("weights", ["per-evaluation", "shared", {"kind": "basis", "pieces": 3}],
                         ids=["per-evaluation", "shared", "basis"])
def test_parameter_counts_are_exact_and_identical_across_schemes(kind, weights):
    f = sizes(D, 3 * D)[kind]
    owned = {"per-evaluation": 28, "shared": 1}.get(weights, 3) if isinstance(weights, str) else 3
    stage = {"weights": weights} if weights == "per-evaluation" else {"weights": weights, "steps": 2}
    for integrator in SCHEMES:
        model = make(spec(MODULES[kind], integrator=integrator, **stage))
        assert parameters(model) == owned * f, (integrator, parameters(model))
        assert model(torch.randn(2, L, D)).shape == (2, L, D)


def test_interleaved_cycle_counts_and_layout_identical_across_schemes():
    cycle = [MODULES["attention"], MODULES["ffn"]]
    f = sizes(D, 3 * D)
    for integrator in SCHEMES:
        model = make(spec(cycle, integrator=integrator))
        assert parameters(model) == 14 * (f["attention"] + f["ffn"])
        s = model.spec.stages[0].tableau.stages
        for j in (0, 1, 13, 27):  # evaluation j calls member j mod 2, wherever the scheme puts it
            layer = model.get_submodule(f"stage0.block{j // s}.eval{j % s + 1}")
            assert hasattr(layer, "qkv" if j % 2 == 0 else "fc1"), (integrator, j)


def reference_ffn(layers, y: torch.Tensor) -> torch.Tensor:
    """MLP(LN(y)) written out, float64."""
    z = torch.nn.functional.layer_norm(y, (y.shape[-1],), layers.ln.weight, layers.ln.bias, layers.ln.eps)
    return torch.nn.functional.gelu(z @ layers.fc1.weight.T + layers.fc1.bias) @ layers.fc2.weight.T + layers.fc2.bias


def test_euler_over_attention_ffn_is_the_pre_ln_layer_stack():
    model = make(spec([MODULES["attention"], MODULES["ffn"]], evaluations=4)).double()
    y = torch.randn(3, L, D, dtype=torch.float64)
    expected = y
    for j in range(4):  # y += MHSA(LN y); y += MLP(LN y); twice
        layers = model.get_submodule(f"stage0.block{j}.eval1")
        expected = expected + (reference_attention(layers, expected, 2, False) if j % 2 == 0
                               else reference_ffn(layers, expected))
    torch.testing.assert_close(model(y), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- numerics against independent references
def reference_attention(part, y: torch.Tensor, heads: int, causal: bool) -> torch.Tensor:
    """MHSA(LN(y)) written out: softmax(q k^T / sqrt(d) + mask) v per head, float64."""
    z = torch.nn.functional.layer_norm(y, (y.shape[-1],), part.ln.weight, part.ln.bias, part.ln.eps)
    q, k, v = (z @ part.qkv.weight.T + part.qkv.bias).chunk(3, dim=-1)
    n, length, width = y.shape
    split = [t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in (q, k, v)]
    scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(width // heads)
    if causal:
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ split[2]).transpose(1, 2).reshape(n, length, width)
    return out @ part.proj.weight.T + part.proj.bias


@pytest.mark.parametrize("causal", [False, True])
def test_attention_f_is_multi_head_self_attention(causal):
    model = make(spec({"kind": "attention", "heads": 4, "causal": causal}, weights="shared", steps=1)).double()
    f = model.get_submodule("stage0.f")
    y = torch.randn(2, L, D, dtype=torch.float64)
    torch.testing.assert_close(model(y) - y, reference_attention(f, y, 4, causal), rtol=0, atol=1e-12)


@pytest.mark.parametrize("integrator", ["rk4", "dopri5", "verner89"])
def test_compiled_rk_step_with_attention_matches_a_plain_python_step(integrator):
    model = make(spec({"kind": "attention", "heads": 2, "causal": True}, weights="shared", steps=1,
                       integrator=integrator, step={"h": "1/2"})).double()
    euler = rkcompile.remanifest(model, integrator="euler", steps=1)  # the same F, one Euler step with h = 1/2
    tableau, h = get_tableau(integrator), 0.5

    def f(z: torch.Tensor) -> torch.Tensor:
        return (euler(z) - z) / h

    y = torch.randn(2, L, D, dtype=torch.float64)
    k = []
    for i in range(tableau.stages):
        z = y + h * sum((float(tableau.A[i][j]) * k[j] for j in range(i)), torch.zeros_like(y))
        k.append(f(z))
    expected = y + h * sum(float(b) * kj for b, kj in zip(tableau.b, k))
    assert (model(y) - expected).abs().max().item() < 1e-10


def reference_attention_core(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, three = qkv.shape
    q, k, v = (t.reshape(n, length, heads, -1).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    weights = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
    return (weights @ v).transpose(1, 2).reshape(n, length, three // 3)


def test_parallel_block_is_attention_plus_mlp_of_one_norm():
    model = make(spec({"kind": "transformer", "heads": 2, "ratio": 2}, weights="shared", steps=1)).double()
    f = model.get_submodule("stage0.f")
    y = torch.randn(2, L, D, dtype=torch.float64)
    z = f.ln(y)
    inner = z @ f.fc_in.weight.T + f.fc_in.bias
    qkv, hidden = inner[..., :3 * D], inner[..., 3 * D:]
    attention = reference_attention_core(qkv, 2)
    w_attention, w_mlp = f.fc_out.weight[:, :D], f.fc_out.weight[:, D:]
    expected = attention @ w_attention.T + torch.nn.functional.gelu(hidden) @ w_mlp.T + f.fc_out.bias
    torch.testing.assert_close(model(y) - y, expected, rtol=0, atol=1e-12)
    assert "stage0_block0_k1_core_gelu" in model.code  # the core is inlined: each operation its own node


# ---------------------------------------------------------------- stems, heads, entries on tokens
def test_embedding_stem_per_token_head_and_project_entry():
    data = spec({"kind": "transformer", "heads": 2, "causal": True}, input={"length": 6, "vocabulary": 11},
                stem={"kind": "embedding", "features": D}, output={"kind": "per-token", "classes": 11},
                evaluations=2)
    data["stages"].append({"features": 12, "entry": {"kind": "project", "stride": 4}, "module": "ffn", "steps": 1})
    model = make(data)
    ids = torch.randint(0, 11, (3, 6))
    assert model(ids).shape == (3, 2, 11)  # 6 tokens pooled by 4 → 2 (the last run shorter)
    assert model.get_submodule("stem.embed").weight.shape == (11, D)
    assert model.get_submodule("stem.pos").embedding.shape == (1, 6, D)
    assert model.get_submodule("stage1.entry.shortcut.proj").weight.shape == (12, D)


def test_causal_attention_ignores_later_tokens():
    model = make(spec({"kind": "attention", "heads": 2, "causal": True}, evaluations=2))
    y = torch.randn(1, L, D)
    changed = y.clone()
    changed[:, -1] += 1.0
    torch.testing.assert_close(model(y)[:, :-1], model(changed)[:, :-1])
    assert not torch.allclose(model(y)[:, -1], model(changed)[:, -1])


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_patch_stem_and_classifier_pooling(pool):
    data = spec([MODULES["attention"], MODULES["ffn"]], input={"channels": 1, "height": 4, "width": 6},
                stem={"kind": "patch", "patch": 2, "features": D, "class_token": pool == "cls"},
                output={"classes": 3, "pool": pool, "norm": "layernorm"}, evaluations=2)
    model = make(data)
    tokens = 6 + (pool == "cls")
    assert model.spec.plan.stages[0].shape.length == tokens
    assert model(torch.randn(2, 1, 4, 6)).shape == (2, 3)
    stem = 1 * D * 4 + D + tokens * D + (D if pool == "cls" else 0)
    f = sizes(D, 3 * D)
    assert parameters(model) == stem + f["attention"] + f["ffn"] + 2 * D + D * 3 + 3


# ---------------------------------------------------------------- bad fields: located errors
BAD = [
    ({"kind": "attention", "heads": 3}, {}, CompileError,
     "t.yaml:9:5: stages[0].module.heads: 3 heads do not divide the width 8 (each head takes width / heads "
     "features); nearest valid: 2"),
    ([MODULES["attention"], {"kind": "transformer", "heads": 5}], {}, CompileError,
     "stages[0].module[1].heads: 5 heads do not divide the width 8"),
    ([MODULES["attention"], MODULES["ffn"]], {"evaluations": 3}, CompileError,
     "stages[0].evaluations: 3 evaluations do not cycle evenly over the 2 interleaved modules; use a multiple of 2"),
    ([MODULES["attention"], MODULES["ffn"]], {"weights": "shared", "steps": 2}, CompileError,
     "stages[0].weights: an interleaved module (a list of 2) cycles over evaluations with their own weights: it "
     "needs 'weights: per-evaluation', found 'shared'"),
    ({"kind": "attention", "heads": 2, "causal": True}, {"input": {"channels": 8, "height": 4, "width": 4}},
     CompileError, "stages[0].module.causal: a causal mask orders the tokens of a sequence; this state is image "
     "8x4x4, which has no token order"),
    ({"kind": "attention", "heads": 2}, {"input": {"features": 8}}, CompileError,
     "stages[0].module.kind: module 'attention' needs token states {length, features}; use a 'patch' or "
     "'embedding' stem"),
    ({"kind": "attention", "heads": 0}, {}, SpecError, "stages[0].module.heads:"),
    ({"kind": "ffn", "act": "gelux"}, {}, SpecError, "stages[0].module.act: unknown value 'gelux' (did you mean "
     "'gelu'?)"),
    ({"kind": "layers", "layers": ["batchnorm"]}, {}, CompileError,
     "stages[0].module.layers[0]: batchnorm normalises channels, not tokens; use layernorm or rmsnorm on tokens"),
    ({"kind": "ffn"}, {"stem": {"kind": "patch", "patch": 3, "features": 8},
                       "input": {"channels": 1, "height": 8, "width": 8}}, CompileError,
     "stem.patch: patch 3 does not divide the image 8x8; use a common divisor such as 8"),
    ({"kind": "ffn"}, {"stem": {"kind": "embedding", "features": 8}}, CompileError,
     "stem: an embedding stem needs ids states; this state is tokens 5x8"),
    ({"kind": "ffn"}, {"output": {"classes": 2, "pool": "cls"}, "input": {"features": 8}}, CompileError,
     "stages[0].module.kind: module 'ffn' needs token states"),
    ({"kind": "ffn"}, {"input": {"length": 4, "features": 8, "channels": 2}}, SpecError,
     "input: give either {channels, height, width} for images, {features} for vectors, {channels, length} for "
     "signal, {features, length} for tokens, {length, vocabulary} for integer tokens; found {channels, features, "
     "length}"),
]


@pytest.mark.parametrize("module, extra, error, message", BAD, ids=[m for *_, m in BAD])
def test_bad_fields_are_located_errors(module, extra, error, message):
    data = spec(module, **{k: v for k, v in extra.items() if k in ("evaluations", "weights", "steps")})
    if "steps" in extra:
        data["stages"][0].pop("evaluations", None)
    for key in ("input", "stem", "output"):
        if key in extra:
            data[key] = extra[key]
    with pytest.raises(error) as info:
        parse_spec(yaml.safe_dump(data, sort_keys=False), file="t.yaml")
    text = str(info.value)
    assert text.startswith("t.yaml:") and "\n" not in text, text
    assert message in text, text


def test_pooling_on_an_image_head_is_located():
    data = {"name": "t", "input": {"channels": 2, "height": 4, "width": 4},
            "stages": [{"module": "basic", "steps": 1}], "output": {"classes": 2, "pool": "cls"}}
    with pytest.raises(CompileError, match=r"output.pool: 'pool' chooses how tokens are pooled; this state is an "
                                           "image"):
        parse_spec(yaml.safe_dump(data), file="t.yaml")


# ---------------------------------------------------------------- everything else: analysis, transforms, artifacts
@pytest.mark.parametrize("path", ["specs/vit-tiny-digits.yaml", "specs/transformer-rk4-sequence.yaml"])
def test_analysis_prediction_matches_measurement_within_5_percent(path):
    report = analyze(build(path), batch=4, measure=True)
    for row in report.rows:
        for predicted, measured in ((row.inference_peak, row.measured_inference_peak),
                                    (row.saved_bytes, row.measured_saved_bytes),
                                    (row.training_peak, row.measured_training_peak)):
            assert abs(predicted - measured) <= 0.05 * measured, (row.label, predicted, measured)
    assert not report.hidden


def test_remanifest_keeps_weights_and_interpolate_refuses_a_cycle():
    model = build("specs/vit-tiny-digits.yaml")
    rk4 = rkcompile.remanifest(model, integrator="rk4")
    assert parameters(rk4) == parameters(model) and rk4.spec.stages[0].blocks == 2
    torch.testing.assert_close(rk4.get_submodule("stage0.block1.eval2.fc1").weight,
                               model.get_submodule("stage0.block5.eval1.fc1").weight)
    with pytest.raises(rkcompile.TransformError, match="interleaves 2 modules .* would break their cycle"):
        rkcompile.interpolate(model)


def test_basis_transformer_refines_exactly_and_saves_and_loads(tmp_path):
    model = build("specs/transformer-rk4-sequence.yaml",
                  {"stages.0.weights": {"kind": "basis", "pieces": 2}, "stages.0.evaluations": None,
                   "stages.0.steps": 2}).double()
    ids = torch.randint(0, 16, (2, 32))
    torch.testing.assert_close(rkcompile.refine(model, steps=False)(ids), model(ids), rtol=0, atol=0)
    rkcompile.save(model, tmp_path / "m.pt")
    loaded = rkcompile.load(tmp_path / "m.pt").double()
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)


def test_meta_input_of_integer_tokens_is_int64():
    model = build("specs/transformer-rk4-sequence.yaml")
    x = meta_input(model.spec, 3, torch.float32, device="cpu")
    assert x.dtype == torch.long and x.shape == (3, 32) and int(x.max()) < 16


def test_shipped_token_specs_have_their_counted_parameters():
    f = sizes(32, 64)
    stem = 1 * 32 * 2 * 2 + 32 + 32 + 17 * 32  # patch conv, class token, 17 positions
    assert parameters(build("specs/vit-tiny-digits.yaml")) == stem + 4 * (f["attention"] + f["ffn"]) + 64 + 330 \
        == 35_306
    stem, head = 16 * 64 + 32 * 64, 2 * 64 + 64 * 16 + 16
    assert parameters(build("specs/transformer-rk4-sequence.yaml")) == stem + 8 * sizes(64, 256)["transformer"] + \
        head == 402_576


@pytest.mark.slow
def test_torch_compile_of_an_interleaved_transformer_matches_eager():
    model = make(spec([MODULES["attention"], MODULES["ffn"]], evaluations=4, integrator="midpoint"))
    compiled = torch.compile(model)
    y = torch.randn(2, L, D)
    torch.testing.assert_close(compiled(y), model(y), rtol=1e-5, atol=1e-5)
    compiled(y).sum().backward()
    assert model.get_submodule("stage0.block0.eval1.qkv").weight.grad is not None
