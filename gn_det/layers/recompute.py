"""Recompute scopes: where a saved fused GN(+ReLU) output is stored as a recipe, not a tensor.

The layer after a fused ``GroupNorm + ReLU`` (the next conv, a max-pool, the box head's fc)
saves its input for backward. Inside a recompute scope, a ``saved_tensors_hooks`` pack hook
recognises that input (or a view of it) as a fused output whose values are unchanged and stores
its ``GroupNormActState`` (references to GN's input and statistics, which the fused op keeps
anyway); the unpack hook recomputes the tensor elementwise when backward needs it. Every other
saved tensor is stored as usual (detached, with autograd's in-place modification check kept).

``install_recompute_scope(module)`` makes every forward of ``module`` such a scope;
``apply_conv_settings`` does it for each component it converts. Hooks already active when the
scope opens (``torch.autograd.graph.save_on_cpu``, activation checkpointing) still receive every
tensor the scope does not replace by a recipe.
"""

import copy
import functools
import threading
from collections import OrderedDict

import torch
from torch import nn

from .group_norm_act import RECIPE_ATTR

__all__ = ["recompute_scope", "install_recompute_scope", "has_recompute_scope", "remove_recompute_scope"]


class _Plain:
    """A tensor saved as-is; detached so a saved output does not keep its own graph node alive."""

    __slots__ = ("tensor", "version")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor.detach()
        self.version = tensor._version

    def unpack(self) -> torch.Tensor:
        # Autograd skips its own in-place check when hooks are active; do it here.
        if self.tensor._version != self.version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{self.tensor.type()} {list(self.tensor.shape)}] is at version "
                f"{self.tensor._version}; expected version {self.version} instead "
                "(reported by gn_det's recompute scope, MODEL.GN.FUSED)."
            )
        return self.tensor


class _Recipe:
    """A fused output (or a view of it) stored as its GroupNormActState."""

    __slots__ = ("state", "view")

    def __init__(self, state, view=None):
        self.state = state
        self.view = view  # None, or (size, stride, storage offset relative to the output)

    def unpack(self) -> torch.Tensor:
        y = self.state.recompute()
        if self.view is None:
            return y
        size, stride, offset = self.view
        return y.as_strided(size, stride, y.storage_offset() + offset)


class _Outer:
    """A tensor handed to the hooks that were active before the scope opened."""

    __slots__ = ("outer_unpack", "packed")

    def __init__(self, outer_unpack, packed):
        self.outer_unpack = outer_unpack
        self.packed = packed

    def unpack(self) -> torch.Tensor:
        return self.outer_unpack(self.packed)


def _recipe_for(t: torch.Tensor):
    state = getattr(t, RECIPE_ATTR, None)
    if state is not None and state.describes(t):
        return _Recipe(state)
    base = t._base
    if base is not None and base.dtype == t.dtype:
        state = getattr(base, RECIPE_ATTR, None)
        if state is not None and state.describes(base):  # a view shares its base's version
            return _Recipe(state, (t.size(), t.stride(), t.storage_offset() - base.storage_offset()))
    return None


def _make_hooks(outer):
    outer_pack, outer_unpack = outer if outer is not None else (None, None)

    def pack(t: torch.Tensor):
        recipe = _recipe_for(t)
        if recipe is not None:
            return recipe
        if outer_pack is not None:
            return _Outer(outer_unpack, outer_pack(t))
        return _Plain(t)

    def unpack(packed):
        return packed.unpack()

    pack._gn_det_recompute = True  # lets a nested scope see that one is already open
    return pack, unpack


def _top_hooks():
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None


def _can_open() -> bool:
    if (
        not torch.is_grad_enabled()
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    ):
        return False
    enabled = getattr(torch._C._autograd, "_saved_tensors_hooks_is_enabled", None)
    return enabled is None or enabled()


class recompute_scope:
    """Context manager: inside it, saved fused GN(+ReLU) outputs are stored as recipes.

    A no-op when grad is disabled (inference), under tracing or compilation, or when a scope is
    already open (nested components).
    """

    def __enter__(self):
        self._hooks = None
        if _can_open():
            top = _top_hooks()
            if top is None or not getattr(top[0], "_gn_det_recompute", False):
                self._hooks = torch.autograd.graph.saved_tensors_hooks(*_make_hooks(top))
                self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None
        return False


_open_scopes = threading.local()


def _stack():
    stack = getattr(_open_scopes, "stack", None)
    if stack is None:
        stack = _open_scopes.stack = []
    return stack


# Module-level functions (not closures), so modules with scopes still deepcopy and pickle.
def _enter_scope(module, args):
    _stack().append(recompute_scope().__enter__())


def _exit_scope(module, args, output):
    stack = _stack()
    if stack:  # empty only if the scope was installed while this forward was running
        stack.pop().__exit__(None, None, None)


def has_recompute_scope(module: nn.Module) -> bool:
    return _enter_scope in module._forward_pre_hooks.values()


def install_recompute_scope(module: nn.Module) -> nn.Module:
    """Make every forward of ``module`` a recompute scope (idempotent). Returns ``module``.

    The closing hook is registered with ``always_call=True``, so an exception in the forward
    still closes the scope.
    """
    if not has_recompute_scope(module):
        module.register_forward_pre_hook(_enter_scope)
        module.register_forward_hook(_exit_scope, always_call=True)
        # torch.jit.script compiles every forward hook, and these are Python-only: scripting
        # (Detectron2's scripting_with_instances included) gets a copy without them.
        module.__prepare_scriptable__ = functools.partial(_prepare_scriptable, module)
    return module


def _prepare_scriptable(module: nn.Module) -> nn.Module:
    """What ``torch.jit.script`` compiles instead of ``module``: the class's own
    ``__prepare_scriptable__`` result (Detectron2 gives ResNet and FPN one) or a shallow copy,
    without the recompute scope, which only saves training memory."""
    own = getattr(type(module), "__prepare_scriptable__", None)
    prepared = own(module) if own is not None else module
    if prepared is module:
        prepared = copy.copy(module)
    for name in ("_forward_pre_hooks", "_forward_hooks", "_forward_hooks_always_called"):
        setattr(prepared, name, OrderedDict(getattr(prepared, name)))  # the copy's own dicts
    return remove_recompute_scope(prepared)


def remove_recompute_scope(module: nn.Module) -> nn.Module:
    """Undo ``install_recompute_scope`` on ``module`` (idempotent). Returns ``module``.

    The export step removes the scopes (an inference model has nothing to recompute).
    """
    for hooks, hook in ((module._forward_pre_hooks, _enter_scope), (module._forward_hooks, _exit_scope)):
        for handle_id in [k for k, v in hooks.items() if v is hook]:
            del hooks[handle_id]
            module._forward_hooks_always_called.pop(handle_id, None)
    module.__dict__.pop("__prepare_scriptable__", None)
    return module
