"""What the ResNet residual functions share: activation form, conv bias, norm and activation kinds."""

from __future__ import annotations

from typing import ClassVar, Literal

from rkcompile.fields import Activation, NormKind
from rkcompile.functions import ResidualFunction

__all__ = ["ResNetBlock"]


class ResNetBlock(ResidualFunction):
    """Options of basic and bottleneck blocks; `after` defaults to relu for post-activation, none for pre."""

    form: Literal["post", "pre"] = "post"
    bias: bool = False
    norm: NormKind = "batchnorm"
    act: Activation = "relu"
    state: ClassVar[tuple[str, ...]] = ("image", "signal")  # conv2d on images, conv1d on signals
    state_hint: ClassVar[str] = "uses convolutions and needs image or signal states; use 'mlp' for vectors"

    def after_activation(self) -> str | None:
        """Explicit `after`, else relu after the addition for post-activation blocks (He et al. 2016)."""
        if self.after is not None:
            return self.after
        return "relu" if self.form == "post" else None
