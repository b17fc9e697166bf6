"""ResNet's basic block (He et al. 2016): conv-norm-act-conv-norm, or its pre-activation form."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from rkcompile.fields import PositiveInt
from rkcompile.functions import register_module
from rkcompile.functions.resnet import ResNetBlock
from rkcompile.shapes import Planner

__all__ = ["Basic"]


@register_module
class Basic(ResNetBlock):
    """Post-activation conv-norm-act-conv-norm, or pre-activation norm-act-conv-norm-act-conv; odd `kernel`."""

    kind: Literal["basic"]
    example: ClassVar[dict] = {"kind": "basic"}
    kernel: PositiveInt = 3

    @model_validator(mode="after")
    def _odd_kernel(self) -> Basic:
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel {self.kernel} is even: padding kernel // 2 keeps the resolution only for odd "
                             f"kernels; use {self.kernel - 1} or {self.kernel + 1}")
        return self

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """Two kernel x kernel convs to `width`, the first with `stride`."""
        if self.form == "post":
            f.conv(width, self.kernel, stride, self.bias)
            f.norm(self.norm)
            f.act(self.act)
            f.conv(width, self.kernel, 1, self.bias)
            f.norm(self.norm)
        else:
            f.norm(self.norm)
            f.act(self.act)
            f.conv(width, self.kernel, stride, self.bias)
            f.norm(self.norm)
            f.act(self.act)
            f.conv(width, self.kernel, 1, self.bias)
