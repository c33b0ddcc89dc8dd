"""Python's cyclic garbage collector paused while a COCO-sized json is parsed and checked.

A train2017-sized json parses into ~15 million container objects. The collector runs every few
hundred allocations and, every time its oldest generation has grown by a quarter, walks all of
them; during the parse and the checks that follow, that is 12 full walks of a growing heap:
13 s of a 46 s validation on the generated train2017-sized set (docs/results/2026-12-06_coco_scale.md),
and ~40 % of Detectron2's own ``load_coco_json``. None of it finds anything: a parsed json is a
tree (dicts, lists, strings, numbers), freed by reference counting when it is dropped.

``paused_gc()`` turns the collector off for the block and restores its previous state after.
"""

import contextlib
import gc

__all__ = ["paused_gc"]


@contextlib.contextmanager
def paused_gc():
    """No cyclic garbage collection inside the block (reference counting still frees objects);
    the collector's state before the block is restored after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
