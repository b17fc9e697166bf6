"""Compiled models in real use: dtype/device moves, autocast, channels_last, torch.compile, DDP, training."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rkcompile import build

SMALL = {"input.height": 8, "input.width": 8}


def small_cnn(integrator: str = "rk4"):
    """ResNet-14 layout (transitions with zero-pad shortcuts) at 8x8 with an RK4 first stage."""
    return build("specs/resnet14-cifar10.yaml", {**SMALL, "stages.0.integrator": integrator, "stages.0.evaluations": 4})


def test_generated_code_fixes_no_device_or_dtype():
    code = small_cnn().code + build("specs/continuousnet-2-2-2.yaml").code
    for word in ("device", "dtype", "cuda", "float32", "torch.tensor(", "torch.zeros(", "torch.ones("):
        assert word not in code


def test_float64_and_meta():
    model = small_cnn().double().eval()
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64
    meta = small_cnn().to(torch.device("meta"))
    out = meta(torch.empty(2, 3, 8, 8, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 10)
    adaptive = build("specs/ho-resnet58-verner89-adaptive.yaml", SMALL).to(torch.device("meta"))
    assert adaptive(torch.empty(1, 3, 8, 8, device="meta")).shape == (1, 10)


def test_autocast_bfloat16_and_channels_last():
    model = small_cnn().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    reference = model(x)
    cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(cl, reference, atol=1e-5)


def test_short_training_run_reduces_loss():
    torch.manual_seed(0)
    model = build("specs/spirals-rk4.yaml")
    x = torch.randn(256, 2)
    y = (x[:, 0] * x[:, 1] > 0).long()  # XOR quadrants: not linearly separable
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.slow
def test_torch_compile_forward_backward():
    model = build("specs/pendulum-odenet.yaml")
    compiled = torch.compile(model)
    x = torch.randn(4, 2, requires_grad=True)
    out = compiled(x)
    out.sum().backward()
    assert torch.allclose(out, model(x), atol=1e-6)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # different data per rank; the spec's seed makes initial weights equal
    model = torch.nn.parallel.DistributedDataParallel(small_cnn("midpoint"))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # parameters only: BN running statistics are updated from each rank's own batch after DDP's broadcast
    params = {k: v.detach() for k, v in model.module.named_parameters()}
    torch.save(params, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_keep_parameters_identical(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    start = dict(small_cnn("midpoint").named_parameters())
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], start[k]) for k in a if k.endswith("weight"))  # it did train
