"""The training data stream as a function of its position, so that ``--resume`` continues it.

Detectron2's training loader is an endless stream of batches, but not one a checkpoint can
point into: on resume its ``TrainingSampler`` starts the shuffled stream over, loader workers
reseed their random generators when they start, aspect-ratio grouping forms batches from
whatever order the workers deliver images in, and the augmentations draw from the process's
(or worker's) running numpy state. A resumed run therefore trains on other images with other
flips than the uninterrupted run would have.

Here every batch is a function of (seed, world size, rank, batch size, the dataset) and of its
number in the stream, nothing else:

- ``ResumableSampler`` wraps the sampler Detectron2 builds from the config (``TrainingSampler``,
  ``RepeatFactorTrainingSampler``, ...). It numbers the run's global index stream (position p is
  the p-th image the whole run draws), takes this rank's share as Detectron2 does (positions
  rank, rank + world size, ...), forms the batches in index space with Detectron2's own
  ``AspectRatioGroupedDataset`` (so prefetching workers cannot reorder them) and starts after
  the batches a checkpoint already trained on.
- ``PositionSeededDataset`` runs Detectron2's mapper on the image at each position with the
  numpy, Python and torch (CPU) generators seeded from (seed, position), and gives the process
  its own generator states back afterwards: an image's augmentation depends neither on the
  worker that loads it, nor on ``DATALOADER.NUM_WORKERS``, nor on when the run was interrupted.
- ``build_resumable_train_loader(cfg)`` hands both to Detectron2's
  ``build_detection_train_loader``. Each batch is one chunk of the sampler's stream, which
  Detectron2 gives to one loader worker and returns in order.

With ``DATALOADER.NUM_WORKERS 0`` the batches hold the same images as Detectron2's plain loader;
only the augmentation draws differ. Mappers that return None (to skip an image) fall back to
Detectron2's ``MapDataset`` retry, whose choice of replacement depends on history.
"""
import contextlib
import hashlib
import itertools
import logging
import random
import struct
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.utils.data as torchdata
from detectron2.data import DatasetMapper, build_detection_train_loader
from detectron2.data.common import AspectRatioGroupedDataset, DatasetFromList, MapDataset, ToIterableDataset
from detectron2.utils import comm

__all__ = ["ResumableSampler", "PositionSeededDataset", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)

# What must match between the checkpointed run and this one for the stream to continue exactly.
_SAME_RUN_KEYS = ("world_size", "batch_size", "dataset_size", "aspect_ratio_grouping", "sampler", "shuffle_seed")


def _sample_seed(seed: int, position: int) -> int:
    """A 64-bit seed for the image at global stream ``position`` of a run seeded with ``seed``
    (a hash: nearby positions get unrelated seeds; 1 us, where numpy's SeedSequence takes 15)."""
    digest = hashlib.blake2b(struct.pack("<QQ", seed & 0xFFFFFFFFFFFFFFFF, position), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@contextlib.contextmanager
def _generators_seeded(seed: int, restore: Optional[bool] = None):
    """numpy, Python and torch's CPU generator seeded from ``seed`` inside.

    In the main process (``NUM_WORKERS 0``) their states are restored after, so loading data
    draws nothing from the generators the model uses (saving and restoring numpy's state is most
    of this function's cost). A loader worker's generators serve only the data, so they are left
    seeded (``restore`` None: decided so; True/False: forced). Only torch's CPU generator:
    ``torch.manual_seed`` would also reseed CUDA's."""
    if restore is None:
        restore = torchdata.get_worker_info() is None
    if restore:
        numpy_state, python_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    np.random.seed(seed & 0xFFFFFFFF)
    random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        if restore:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
            torch.set_rng_state(torch_state)


class PositionSeededDataset(torchdata.Dataset):
    """Maps the ``(seed, position, index)`` keys of ``ResumableSampler``: element ``index`` of
    ``dataset`` (Detectron2's ``MapDataset``: dataset dict -> mapper), loaded with the random
    generators seeded from (seed, position)."""

    def __init__(self, dataset: torchdata.Dataset):
        self._dataset = dataset

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, key: Tuple[int, int, int]):
        seed, position, index = key
        with _generators_seeded(_sample_seed(seed, position)):
            return self._dataset[index]


class ResumableSampler(torchdata.Sampler):
    """This rank's training stream as ``(seed, position, index)`` keys, whole batches at a time.

    Args:
        sampler: a Detectron2 training sampler (``TrainingSampler`` and the samplers derived from
            it or built like it): its ``_infinite_indices()`` is the run's global index stream,
            of which rank r takes positions r, r + world size, ... (what its ``__iter__`` does).
        batch_size: images per batch on this rank.
        dataset_size: number of dataset dicts the sampler draws from (recorded, and compared on
            resume).
        image_sizes: per dataset index ``(width, height)``, to group batches by aspect ratio as
            Detectron2's ``AspectRatioGroupedDataset`` does; None: consecutive images.
        seed: the augmentation seed, the same on every rank.

    ``continue_from`` sets where iteration starts; ``state`` describes the stream for a checkpoint;
    ``ResumableSampler.of(loader)`` finds it behind a loader.
    """

    def __init__(self, sampler, batch_size: int, dataset_size: int, image_sizes: Optional[np.ndarray], seed: int):
        if not callable(getattr(sampler, "_infinite_indices", None)):
            raise TypeError(
                f"ResumableSampler needs a Detectron2 training sampler (with _infinite_indices(), "
                f"like TrainingSampler); got {type(sampler).__name__}"
            )
        self._sampler = sampler
        self.batch_size = int(batch_size)
        self.dataset_size = int(dataset_size)
        self._image_sizes = image_sizes
        self.seed = int(seed)
        self.rank = comm.get_rank()
        self.world_size = comm.get_world_size()
        # The stream segment this run reads: it starts at global position `origin_position` at
        # iteration `origin_iteration`; iteration starts after `skip_batches` of its batches.
        self.origin_position = 0
        self.origin_iteration = 0
        self.skip_batches = 0

    def _batches(self) -> Iterator[List[Tuple[int, int]]]:
        """(position, index) batches of this rank's share of the stream segment."""
        indices = itertools.islice(
            enumerate(self._sampler._infinite_indices()), self.origin_position + self.rank, None, self.world_size
        )
        if self._image_sizes is None:
            batches = iter(lambda: list(itertools.islice(indices, self.batch_size)), [])
        else:
            sizes = self._image_sizes
            records = (
                {"width": sizes[index, 0], "height": sizes[index, 1], "key": (position, index)}
                for position, index in indices
            )
            grouped = AspectRatioGroupedDataset(records, self.batch_size)
            batches = ([r["key"] for r in batch] for batch in grouped)
        return itertools.islice(batches, self.skip_batches, None)

    def __iter__(self) -> Iterator[Tuple[int, int, int]]:
        for batch in self._batches():
            for position, index in batch:
                yield self.seed, position, index

    def state(self, next_iteration: int) -> Dict[str, Any]:
        """What a checkpoint taken before iteration ``next_iteration`` records about the stream."""
        batches_read = next_iteration - self.origin_iteration
        return {
            "seed": self.seed,
            "shuffle_seed": getattr(self._sampler, "_seed", None),
            "sampler": type(self._sampler).__name__,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "dataset_size": self.dataset_size,
            "aspect_ratio_grouping": self._image_sizes is not None,
            "origin_position": self.origin_position,
            "origin_iteration": self.origin_iteration,
            "next_iteration": next_iteration,
            # Global positions handed out so far (with aspect-ratio grouping a few more were
            # drawn and are still waiting in a bucket).
            "images_read": self.origin_position + batches_read * self.batch_size * self.world_size,
        }

    @staticmethod
    def of(data_loader) -> Optional["ResumableSampler"]:
        """The ``ResumableSampler`` behind a loader from ``build_resumable_train_loader``, else None."""
        dataset = getattr(data_loader, "dataset", None)
        sampler = getattr(dataset, "sampler", None) if isinstance(dataset, ToIterableDataset) else None
        return sampler if isinstance(sampler, ResumableSampler) else None

    def continue_from(self, saved: Optional[Dict[str, Any]], start_iter: int) -> str:
        """Start iteration at ``start_iter`` of the run that saved ``saved`` (``state``'s dict, or
        None when the checkpoint has none). Returns what was done, for the log."""
        if saved is None:
            self.origin_position = self.origin_iteration = 0
            self.skip_batches = start_iter
            if start_iter == 0:
                return "Data stream: starts at its beginning."
            return (
                f"Data stream: the checkpoint records no stream state (saved by plain Detectron2 or an "
                f"older gn_det); assuming the same seed, processes and batch size, it continues at "
                f"batch {start_iter}."
            )
        self.seed = int(saved["seed"])
        mine = self.state(start_iter)
        different = [k for k in _SAME_RUN_KEYS if saved.get(k) != mine[k]]
        if not different:
            self.origin_position = int(saved["origin_position"])
            self.origin_iteration = int(saved["origin_iteration"])
            self.skip_batches = start_iter - self.origin_iteration
            return (
                f"Data stream: continues exactly where the checkpoint was taken (batch {start_iter}, "
                f"seed {self.seed}, {self.world_size} x {self.batch_size} images per iteration)."
            )
        self.origin_position = int(saved["images_read"])
        self.origin_iteration = start_iter
        self.skip_batches = 0
        changes = ", ".join(f"{k} {saved.get(k)!r} -> {mine[k]!r}" for k in different)
        return (
            f"Data stream: exact continuation is not possible ({changes}): this run cannot see the "
            f"batches the checkpointed run would have. Instead it continues the same shuffled "
            f"index stream after the {self.origin_position} images the checkpointed run drew, split "
            f"over {self.world_size} process(es) x {self.batch_size} images, and each image keeps "
            f"the augmentation of its position (seed {self.seed}). The model, optimizer, scheduler "
            f"and iteration are restored as usual; the result is statistically like, not equal "
            f"to, the uninterrupted run."
        )


def _image_sizes(dataset_dicts: List[dict]) -> np.ndarray:
    sizes = np.zeros((len(dataset_dicts), 2), dtype=np.int64)
    for i, record in enumerate(dataset_dicts):
        if "width" not in record or "height" not in record:
            raise ValueError(
                f"DATALOADER.ASPECT_RATIO_GROUPING needs 'width' and 'height' in every dataset dict; "
                f"record {i} ({record.get('file_name', '?')}) has neither. Set "
                f"DATALOADER.ASPECT_RATIO_GROUPING False or add the sizes."
            )
        sizes[i] = record["width"], record["height"]
    return sizes


def build_resumable_train_loader(cfg, mapper=None):
    """Detectron2's training loader for ``cfg`` (same dataset, sampler, mapper, batch size,
    workers) over the resumable stream; ``mapper`` defaults to ``DatasetMapper(cfg, True)``.

    A dataset that is not a list of dicts (a torch Dataset from the catalog) gets Detectron2's
    plain loader, with a warning that resume does not continue its stream."""
    arguments = build_detection_train_loader.from_config(cfg, mapper=mapper or DatasetMapper(cfg, True))
    dataset, sampler = arguments["dataset"], arguments["sampler"]
    if not isinstance(dataset, list):
        logger.warning(
            f"DATASETS.TRAIN {tuple(cfg.DATASETS.TRAIN)} is a {type(dataset).__name__}, not a list of "
            "dataset dicts: using Detectron2's plain loader, whose stream --resume starts over."
        )
        return build_detection_train_loader(**arguments)
    world_size = comm.get_world_size()
    total = arguments["total_batch_size"]
    if total <= 0 or total % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH {total} cannot be split evenly over {world_size} processes; use a "
            f"positive multiple of {world_size}."
        )
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    stream = ResumableSampler(
        sampler,
        total // world_size,
        len(dataset),
        _image_sizes(dataset) if arguments["aspect_ratio_grouping"] else None,
        seed=seed,
    )
    mapped = PositionSeededDataset(MapDataset(DatasetFromList(dataset, copy=False), arguments["mapper"]))
    return build_detection_train_loader(
        mapped,
        mapper=None,
        sampler=stream,
        total_batch_size=total,
        aspect_ratio_grouping=False,  # done in the sampler, on indices
        num_workers=arguments["num_workers"],
    )
