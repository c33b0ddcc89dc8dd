"""Weight Standardization (Qiao et al. 2019) for Detectron2's ``Conv2d``."""
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d

__all__ = ["standardize_weight", "WSConv2d"]


def standardize_weight(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit std per output channel over (in, kh, kw).

    weight: (out, in/groups, kh, kw). Uses the biased variance, as mmdetection's ConvWS does,
    so the result's per-channel std is 1 up to eps.
    """
    flat = weight.flatten(1)
    var, mean = torch.var_mean(flat, dim=1, correction=0, keepdim=True)
    return ((flat - mean) / torch.sqrt(var + eps)).view_as(weight)


class WSConv2d(Conv2d):
    """Detectron2 ``Conv2d`` (with ``norm`` and ``activation``) that standardizes its weight.

    The stored parameter stays the raw ``weight``, so checkpoints have ordinary keys and
    a WS checkpoint loads into a plain ``Conv2d`` (and back) without renaming.
    """

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        self.ws_eps = ws_eps

    def effective_weight(self) -> torch.Tensor:
        return standardize_weight(self.weight, self.ws_eps)

    def forward(self, x):
        x = F.conv2d(
            x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def extra_repr(self):
        return super().extra_repr() + f", ws_eps={self.ws_eps}"
