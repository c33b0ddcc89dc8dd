"""Detectron2 ``Conv2d(norm=GroupNorm, activation=ReLU or None)`` running the fused GN(+ReLU).

``conv_settings.convert_to_fused_group_norm`` switches a built component's convs to these
classes: parameters, buffers and state_dict keys are unchanged, ``norm`` and ``activation`` stay
in place (so ``repr`` and a conversion back still work); only the forward differs.
"""

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from torch import nn

from .group_norm_act import group_norm_act
from .weight_std import WSConv2d

__all__ = ["FusedGNActConv2d", "WSFusedGNActConv2d", "fusable_activation", "fusable_conv"]

_RELU_FUNCTIONS = (F.relu, F.relu_, torch.relu, torch.relu_)


def fusable_activation(activation) -> "str | None":
    """``"relu"`` for ReLU (``nn.ReLU``, ``F.relu``, ``F.relu_``, ``torch.relu``), ``"identity"`` for
    none, ``None`` for any other activation (which then keeps the unfused path)."""
    if activation is None or isinstance(activation, nn.Identity):
        return "identity"
    if isinstance(activation, nn.ReLU) or any(activation is f for f in _RELU_FUNCTIONS):
        return "relu"
    return None


def fusable_conv(conv: nn.Module) -> "str | None":
    """``fusable_activation`` of a conv whose ``norm`` is an affine GroupNorm, else None."""
    norm = getattr(conv, "norm", None)
    # gn_det's GroupNorm subclasses nn.GroupNorm; Detectron2's own "GN" is nn.GroupNorm too.
    if not isinstance(norm, nn.GroupNorm) or not norm.affine:
        return None
    return fusable_activation(conv.activation)


class FusedGNActConv2d(Conv2d):
    """A Detectron2 ``Conv2d`` whose ``norm`` (GroupNorm) and ReLU/identity run fused.

    Same parameters and state_dict as the ``Conv2d`` it was converted from; output equal to
    ``activation(norm(conv(x)))`` within float32 rounding.
    """

    fused_activation = "relu"
    # group_norm_act's backend; "auto" picks per input (a test or benchmark may pin "torch").
    fused_backend = "auto"

    def _conv_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x):
        # TorchScript compiles only the branch that scripting takes (``is_scripting`` is a
        # compile-time constant there), so the Python-only fused path never reaches the compiler.
        if torch.jit.is_scripting():
            return self._standard_forward(x)
        else:
            return self._fused_forward(x)

    def _standard_forward(self, x):
        """Detectron2 ``Conv2d``'s own forward (``nn.GroupNorm``, then the activation): what a
        scripted model runs."""
        x = F.conv2d(x, self._conv_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    @torch.jit.unused
    def _fused_forward(self, x):
        # Under tracing and export group_norm_act writes torch's own group_norm (+ relu).
        x = F.conv2d(x, self._conv_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)
        norm = self.norm
        return group_norm_act(
            x,
            norm.weight,
            norm.bias,
            norm.num_groups,
            norm.eps,
            self.fused_activation,
            self.fused_backend,
            where=getattr(norm, "component", "") or type(self).__name__,
        )

    def extra_repr(self):
        return super().extra_repr() + f", fused={self.norm.__class__.__name__}+{self.fused_activation}"


class WSFusedGNActConv2d(FusedGNActConv2d, WSConv2d):
    """``FusedGNActConv2d`` with Weight Standardization (GN+WS, fused)."""

    def _conv_weight(self) -> torch.Tensor:
        return self.effective_weight()
