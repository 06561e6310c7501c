"""The grain input pipeline: seeded order, per-process shard, checkpointable position.

``make_loader(source, seed=..., global_batch_size=...)`` turns a random-access source (see
``sources.py``) into batches ``{'image': uint8 [b, H, W, 3], 'label': int32 [b]}`` with
``b = global_batch_size / process_count`` rows on each process:

    source -> shuffle(seed) -> batch(b) -> this process's batches -> repeat(num_epochs)

* Order: a function of ``seed`` alone. Each epoch is a new permutation (grain's ``shuffle`` seeds
  epoch ``e`` with ``seed' + e``); the remainder of an epoch that does not fill a global batch is
  dropped, so every epoch has ``len(source) // global_batch_size`` steps.
* Shards: global step ``k`` of an epoch is the permuted positions ``[k*B, (k+1)*B)``; process ``p``
  reads rows ``[p*b, (p+1)*b)`` of it. The processes' shards are disjoint, and the global batch
  (``parallel.to_global_batch``) holds the same rows whatever the number of processes, in the same
  order when the mesh lists devices by process (as ``jax.devices()`` does on CPU and GPU).
* Stratified order (``sampler='stratified'``, what the official CL-vs-NSCL code samples): each
  epoch visits every example once, in an order that deals the classes round-robin (each class's
  examples permuted, the classes in a permuted order, both seeded by ``seed`` and the epoch), so
  every global batch of at least ``num_classes`` rows holds every class while the classes last.
* Position: ``iter(loader)`` is a ``grain.DatasetIterator``; ``get_state()`` is a small
  JSON-serialisable dict, and ``set_state(state)`` on a fresh iterator continues with exactly the
  batches the first one would have produced next.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import grain
import numpy as np


SAMPLERS = ('shuffle', 'stratified')


class StratifiedOrderMapDataset(grain.MapDataset):
  """``parent`` in the stratified order of the module docstring (epoch ``e`` is indices
  ``[e * n, (e + 1) * n)``, as grain's shuffle counts them)."""

  def __init__(self, parent: grain.MapDataset, labels: Sequence[int], seed: int):
    super().__init__(parent)
    self._labels = np.asarray(labels, np.int64)
    if len(self._labels) != len(parent):
      raise ValueError(f'{len(self._labels)} labels for {len(parent)} examples')
    self._seed = int(seed)
    self._orders: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return len(self._parent)

  def order(self, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s permutation of ``range(n)`` (cached; grain reads from threads, and a
    race recomputes the same array)."""
    if epoch not in self._orders:
      rng = np.random.default_rng([self._seed, epoch])
      classes = rng.permutation(np.unique(self._labels))
      queues = [rng.permutation(np.flatnonzero(self._labels == c)) for c in classes]
      longest = max(len(q) for q in queues)
      # Round-robin over the classes: row r of this table is the r-th example of every class.
      dealt = np.full((longest, len(queues)), -1, np.int64)
      for column, queue in enumerate(queues):
        dealt[:len(queue), column] = queue
      order = dealt.reshape(-1)
      self._orders = {epoch: order[order >= 0]}  # keep one epoch: the iterator moves forward
    return self._orders[epoch]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, position = divmod(int(index), len(self))
    return self._parent[int(self.order(epoch)[position]) + epoch * len(self)]

  def __str__(self) -> str:
    return 'StratifiedOrderMapDataset'


@dataclasses.dataclass(frozen=True)
class Loader:
  """A configured pipeline. Iterate it (``iter(loader)``) for a checkpointable iterator."""

  dataset: grain.IterDataset
  num_examples: int
  global_batch_size: int
  per_process_batch_size: int
  steps_per_epoch: int
  process_index: int
  process_count: int

  def __iter__(self) -> grain.DatasetIterator:
    return iter(self.dataset)


def grain_seed(seed: int) -> int:
  """Maps a user seed to grain's 32-bit shuffle seed.

  grain seeds epoch ``e`` with ``seed + e``; hashing the user seed first keeps runs with seeds 0
  and 1 from seeing the same permutations one epoch apart.
  """
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}')
  return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def make_loader(source: Sequence[Any], *, seed: int, global_batch_size: int,
                shuffle: bool = True, sampler: str = 'shuffle', num_epochs: int | None = None,
                drop_remainder: bool = True, process_index: int | None = None,
                process_count: int | None = None, worker_count: int = 0,
                read_threads: int | None = None, prefetch_batches: int = 4) -> Loader:
  """Builds the batched, sharded, seeded grain pipeline over ``source``.

  Args:
    source: random-access source: ``len()`` and ``[i] -> dict of arrays``.
    seed: the order's seed (any int >= 0).
    global_batch_size: rows per step over all processes.
    shuffle: permute each epoch (``False``: source order, e.g. feature extraction).
    sampler: with ``shuffle``, ``'shuffle'`` (a uniform permutation each epoch) or
      ``'stratified'`` (every class in every batch; the source's ``labels()`` are read once).
    num_epochs: passes over the data; ``None`` repeats forever.
    drop_remainder: drop an epoch's last, partial global batch. ``False`` keeps it (single
      process only: processes could not split it evenly).
    process_index, process_count: this process's shard; default ``jax.process_index()`` and
      ``jax.process_count()``.
    worker_count: grain worker processes reading batches (0: threads in this process, which is
      enough for the decoded caches and ArrayRecord sources). Workers read absl flags, so run
      under ``absl.app`` (as ``glf_jax.main`` does); the order and the state are the same.
    read_threads: threads prefetching batches in this process (default: the CPU count, at most 8).
    prefetch_batches: batches read ahead.

  Raises:
    ValueError: a global batch that the processes cannot split evenly, a source smaller than one
      global batch, or ``drop_remainder=False`` with several processes.
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  # only for the defaults
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} must lie in [0, {process_count})')
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(f'global_batch_size {global_batch_size} must be a positive multiple of the '
                     f'process count {process_count}')
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f'num_epochs must be None (repeat) or >= 1, got {num_epochs}')
  num_examples = len(source)
  if num_examples < global_batch_size and drop_remainder:
    raise ValueError(f'the source has {num_examples} examples, fewer than one global batch of '
                     f'{global_batch_size}')
  if not drop_remainder and process_count > 1:
    raise ValueError('drop_remainder=False needs a single process: the last, partial batch '
                     'cannot be split evenly between processes')

  if sampler not in SAMPLERS:
    raise ValueError(f'train.sampler must be one of {list(SAMPLERS)}, got {sampler!r}')
  per_process = global_batch_size // process_count
  dataset = grain.MapDataset.source(source)
  if shuffle and sampler == 'stratified':
    dataset = StratifiedOrderMapDataset(dataset, source.labels(), grain_seed(seed))
  elif shuffle:
    dataset = dataset.shuffle(seed=grain_seed(seed))
  if drop_remainder:
    steps_per_epoch = num_examples // global_batch_size
    # Mini-batches of b rows; global step k is mini-batches k*P .. k*P+P-1, process p takes the
    # p-th. Slicing (not filtering) keeps the dataset random-access, so it stays checkpointable.
    dataset = dataset.batch(per_process, drop_remainder=True)
    dataset = dataset[process_index:steps_per_epoch * process_count:process_count]
  else:
    steps_per_epoch = -(-num_examples // global_batch_size)
    dataset = dataset.batch(global_batch_size, drop_remainder=False)
  dataset = dataset.repeat(num_epochs)

  threads = read_threads or min(8, os.cpu_count() or 1)
  iter_dataset = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch_batches))
  if worker_count > 0:
    iter_dataset = iter_dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=worker_count))
  return Loader(dataset=iter_dataset, num_examples=num_examples,
                global_batch_size=global_batch_size, per_process_batch_size=per_process,
                steps_per_epoch=steps_per_epoch, process_index=process_index,
                process_count=process_count)
