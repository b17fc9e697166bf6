"""ResNet's bottleneck block (He et al. 2016): 1x1 reduce, 3x3 (with the stride, as torchvision), 1x1 expand."""

from __future__ import annotations

from typing import ClassVar, Literal

from rkcompile.fields import PositiveInt
from rkcompile.functions import register_module
from rkcompile.functions.resnet import ResNetBlock
from rkcompile.shapes import Planner

__all__ = ["Bottleneck"]


@register_module
class Bottleneck(ResNetBlock):
    """1x1 reduce to `width` (default channels / expansion), 3x3, 1x1 expand."""

    kind: Literal["bottleneck"]
    example: ClassVar[dict] = {"kind": "bottleneck", "expansion": 2}
    expansion: PositiveInt = 4
    width: PositiveInt | None = None

    def plan(self, f: Planner, width: int, stride: int) -> None:
        """Reduce, convolve with `stride`, expand to `width`."""
        if self.width is None and width % self.expansion:
            raise f.fail(("expansion",), f"width {width} is not divisible by expansion {self.expansion}; give "
                         "'width' explicitly")
        mid = self.width or width // self.expansion
        if self.form == "post":
            for i, (out, kernel, s) in enumerate(((mid, 1, 1), (mid, 3, stride), (width, 1, 1))):
                f.conv(out, kernel, s, self.bias)
                f.norm(self.norm)
                if i < 2:
                    f.act(self.act)
        else:
            for out, kernel, s in ((mid, 1, 1), (mid, 3, stride), (width, 1, 1)):
                f.norm(self.norm)
                f.act(self.act)
                f.conv(out, kernel, s, self.bias)
