"""RetinaNet with gn_det's norm in its head.

Detectron2's ``RetinaNet`` builds ``RetinaNetHead`` directly (there is no head registry), so the
plugin route is a registered meta-architecture, ``GNRetinaNet``, that differs only in its head.
"""
import re
from typing import Dict, List, Optional

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead
from torch import nn

from ..config import component_norm
from ..layers import NormFactory, apply_conv_settings
from .norm_args import NormArg, SettingsArg, resolve_norm

__all__ = ["ConvNormActSequential", "GNRetinaNetHead", "GNRetinaNet"]

# Detectron2's head keeps one BN per FPN level for these (its CycleBatchNormList); kept as is.
_PER_LEVEL_BATCH_NORMS = ("BN", "SyncBN")

_LOCAL_KEY = re.compile(r"^(\d+)\.(.*)$")


class ConvNormActSequential(nn.Sequential):
    """A ``Sequential`` of Detectron2 ``Conv2d`` (each with ``norm`` and ``activation``) that
    saves and loads under the keys of the unfolded ``[conv, norm, act, conv, norm, act, ...]``
    ``Sequential`` Detectron2's ``RetinaNetHead`` builds.

    Holding each conv-norm-ReLU as one ``Conv2d`` is what lets ``apply_conv_settings`` reach it
    (WS, fused GN+ReLU); the key mapping keeps Detectron2's RetinaNet checkpoints loadable.
    Layer k's conv is key ``3k``, its norm ``3k+1`` (its activation has no state).
    """

    def __init__(self, convs: List[Conv2d]):
        super().__init__(*convs)
        self.register_state_dict_post_hook(_save_unfolded_keys)
        self.register_load_state_dict_pre_hook(_load_unfolded_keys)
        self.register_load_state_dict_post_hook(_report_unfolded_keys)

    @classmethod
    def fold(cls, unfolded: nn.Sequential, norm: Optional[NormFactory] = None):
        """Fold Detectron2's ``[conv, (norm,) ReLU]*`` into ``Conv2d(norm, activation)``s.

        Parameters are moved, not copied. With ``norm`` given, ``unfolded`` has no norm layers and
        ``norm(out_channels)`` provides one per conv.
        """
        layers = list(unfolded)
        step = 2 if norm is not None else 3
        convs = []
        for i in range(0, len(layers), step):
            conv, relu = layers[i], layers[i + step - 1]
            norm_layer = norm(conv.out_channels) if norm is not None else layers[i + 1]
            if not (type(conv) is nn.Conv2d and isinstance(relu, nn.ReLU)):
                raise TypeError(f"Unexpected RetinaNetHead subnet layout: {unfolded}")
            folded = Conv2d(
                conv.in_channels,
                conv.out_channels,
                kernel_size=conv.kernel_size,
                stride=conv.stride,
                padding=conv.padding,
                bias=conv.bias is not None,
                norm=norm_layer,
                activation=relu,
            )
            folded.weight, folded.bias = conv.weight, conv.bias
            convs.append(folded)
        return cls(convs)


def _to_unfolded(local_key: str) -> str:
    match = _LOCAL_KEY.match(local_key)
    layer, rest = int(match.group(1)), match.group(2)
    if rest.startswith("norm."):
        return f"{3 * layer + 1}.{rest[len('norm.'):]}"
    return f"{3 * layer}.{rest}"


def _to_folded(local_key: str) -> str:
    match = _LOCAL_KEY.match(local_key)
    if match is None:
        return local_key
    index, rest = int(match.group(1)), match.group(2)
    layer, position = divmod(index, 3)
    if position == 0:
        return f"{layer}.{rest}"
    if position == 1:
        return f"{layer}.norm.{rest}"
    # An activation has no state: keep the key unmatched so load_state_dict reports it.
    return f"{layer}.activation.{rest}"


def _save_unfolded_keys(module, state_dict, prefix, local_metadata):
    # Pop all, then re-insert (folded and unfolded names overlap); this module's keys are the
    # last ones added to ``state_dict``, so re-inserting keeps the overall order.
    own = [(k, state_dict.pop(k)) for k in list(state_dict) if k.startswith(prefix)]
    for key, value in own:
        state_dict[prefix + _to_unfolded(key[len(prefix):])] = value


def _load_unfolded_keys(module, state_dict, prefix, *args):
    module._load_prefix = prefix  # for _report_unfolded_keys, which is not given the prefix
    own = [(k, state_dict.pop(k)) for k in list(state_dict) if k.startswith(prefix)]
    for key, value in own:
        state_dict[prefix + _to_folded(key[len(prefix):])] = value


def _report_unfolded_keys(module, incompatible_keys):
    # Missing keys were found under the folded names; report them as checkpoints spell them.
    prefix = module.__dict__.pop("_load_prefix", None)
    if prefix is None:
        return
    missing = incompatible_keys.missing_keys
    for i, key in enumerate(missing):
        if key.startswith(prefix):
            missing[i] = prefix + _to_unfolded(key[len(prefix):])


class GNRetinaNetHead(RetinaNetHead):
    """Detectron2's ``RetinaNetHead`` with ``MODEL.RETINANET.NORM`` and ``MODEL.GN.RETINANET_HEAD``.

    Each subnet conv is conv -> norm -> ReLU held in one ``Conv2d`` (see ``ConvNormActSequential``);
    the convs keep their bias, as in Detectron2, so its RetinaNet checkpoints load unchanged.
    ``BN``/``SyncBN`` keep Detectron2's one-BN-per-level (``CycleBatchNormList``) behaviour.

    Input: list of L feature maps (N, C, Hi, Wi); output: per-level logits (N, A*K, Hi, Wi)
    and box deltas (N, A*4, Hi, Wi).
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes,
        num_anchors,
        conv_dims: List[int],
        norm: NormArg = "",
        prior_prob=0.01,
        conv_settings: SettingsArg = None,
    ):
        norm, settings = resolve_norm(norm, conv_settings, "GNRetinaNetHead.norm")
        per_level_bn = isinstance(norm, NormFactory) and norm.name in _PER_LEVEL_BATCH_NORMS
        # Detectron2's head probes ``norm`` with 32 channels and special-cases only BN names, so
        # other norms are added here, after it built its convs with its own initialization.
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            num_anchors=num_anchors,
            conv_dims=list(conv_dims),
            norm=norm.name if per_level_bn else "",
            prior_prob=prior_prob,
        )
        if norm:
            added_norm = None if per_level_bn else norm
            self.cls_subnet = ConvNormActSequential.fold(self.cls_subnet, added_norm)
            self.bbox_subnet = ConvNormActSequential.fold(self.bbox_subnet, added_norm)
        apply_conv_settings(self, settings)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret["norm"], ret["conv_settings"] = component_norm(cfg, "RETINANET_HEAD")
        return ret


@META_ARCH_REGISTRY.register()
class GNRetinaNet(RetinaNet):
    """Detectron2's ``RetinaNet`` with ``GNRetinaNetHead``; set ``MODEL.META_ARCHITECTURE:
    "GNRetinaNet"``. Everything else (losses, inference, keys) is Detectron2's."""

    @classmethod
    def from_config(cls, cfg) -> Dict:
        # Detectron2 builds its own head from the config; build it without a norm (cheap, and
        # norm names it does not know, such as "IN", cannot fail there), then replace it.
        plain_head_cfg = cfg.clone()
        plain_head_cfg.defrost()
        plain_head_cfg.MODEL.RETINANET.NORM = ""
        ret = super().from_config(plain_head_cfg)
        shapes = ret["backbone"].output_shape()
        feature_shapes = [shapes[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
        ret["head"] = GNRetinaNetHead(cfg, feature_shapes)
        return ret
