"""The grain input pipeline: seeded order, per-process shard, checkpointable position.

``make_loader(source, seed=..., global_batch_size=...)`` turns a random-access source (see
``sources.py``) into batches ``{'image': uint8 [b, H, W, 3], 'label': int32 [b]}`` with
``b = global_batch_size / process_count`` rows on each process:

    step g -> (epoch, step of the epoch) -> rows of the epoch's permutation -> source.read_batch

* Order: a function of ``seed`` alone. Each epoch is a new permutation: grain's ``shuffle``
  permutation (epoch ``e`` seeded with ``seed' + e``), computed for the whole epoch at once by
  :func:`epoch_order`; the remainder of an epoch that does not fill a global batch is dropped, so
  every epoch has ``len(source) // global_batch_size`` steps.
* Shards: global step ``k`` of an epoch is the permuted positions ``[k*B, (k+1)*B)``; process ``p``
  reads rows ``[p*b, (p+1)*b)`` of it. The processes' shards are disjoint, and the global batch
  (``parallel.to_global_batch``) holds the same rows whatever the number of processes, in the same
  order when the mesh lists devices by process (as ``jax.devices()`` does on CPU and GPU).
* Reads: one ``source.read_batch(rows)`` per batch (``source_base.read_rows``): a single array
  read for sources held in memory or in a decoded cache. (grain's ``shuffle`` then ``batch``
  read every example on its own, about 30 us of Python per image: 16 ms for a batch of 512.)
* Position: ``iter(loader)`` is a ``grain.DatasetIterator`` over the steps (grain's
  ``MapDataset.range`` of one epoch's steps, repeated); ``get_state()`` is a small
  JSON-serialisable dict (``{'next_index': step}``, as grain's shuffle-then-batch pipeline had), and
  ``set_state(state)`` on a fresh iterator continues with exactly the batches the first one would
  have produced next.
* Stratified order (``sampler='stratified'``, what the official CL-vs-NSCL code samples): each
  epoch visits every example once, in an order that deals the classes round-robin (each class's
  examples permuted, the classes in a permuted order, both seeded by ``seed`` and the epoch), so
  every global batch of at least ``num_classes`` rows holds every class while the classes last.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from typing import Any, Sequence

import grain
import numpy as np

from glf_jax.data.source_base import read_rows

# grain's shuffle: index_shuffle with 4 rounds (grain's dataset/transformations/shuffle.py).
_SHUFFLE_ROUNDS = 4
_U32 = 0xFFFFFFFF
# Blocks up to this many bits are enciphered whole (a table of 2**bits words, 256 MiB at most).
_TABLE_BITS = 26


SAMPLERS = ('shuffle', 'stratified')


def stratified_order(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
  """Epoch ``epoch``'s permutation of ``range(len(labels))`` in the stratified order of the module
  docstring."""
  rng = np.random.default_rng([seed, epoch])
  classes = rng.permutation(np.unique(labels))
  queues = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  longest = max(len(q) for q in queues)
  # Round-robin over the classes: row r of this table is the r-th example of every class.
  dealt = np.full((longest, len(queues)), -1, np.int64)
  for column, queue in enumerate(queues):
    dealt[:len(queue), column] = queue
  order = dealt.reshape(-1)
  return order[order >= 0]


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


def _seed_seq_words(seed: int, count: int) -> list[int]:
  """C++'s ``std::seed_seq{seed}.generate`` of ``count`` 32-bit words ([rand.util.seedseq]):
  the round keys of grain's index shuffle."""
  words = [0x8b8b8b8b] * count
  t = (11 if count >= 623 else 7 if count >= 68 else 5 if count >= 39 else 3 if count >= 7
       else (count - 1) // 2)
  p, q, m = (count - t) // 2, (count - t) // 2 + t, max(2, count)

  def mix(x):
    return x ^ (x >> 27)

  for k in range(m):
    r1 = 1664525 * mix(words[k % count] ^ words[(k + p) % count] ^ words[(k - 1) % count]) & _U32
    r2 = (r1 + (1 if k == 0 else (k % count + seed) if k == 1 else k % count)) & _U32
    words[(k + p) % count] = (words[(k + p) % count] + r1) & _U32
    words[(k + q) % count] = (words[(k + q) % count] + r2) & _U32
    words[k % count] = r2
  for k in range(m, m + count):
    total = (words[k % count] + words[(k + p) % count] + words[(k - 1) % count]) & _U32
    r3 = 1566083941 * mix(total) & _U32
    r4 = (r3 - k % count) & _U32
    words[(k + p) % count] ^= r3
    words[(k + q) % count] ^= r4
    words[k % count] = r4
  return words


def epoch_order(num_examples: int, seed: int) -> np.ndarray:
  """``[index_shuffle(i, num_examples - 1, seed, 4) for i in range(num_examples)]`` (grain's
  shuffle of one epoch; ``grain.experimental.index_shuffle``), for all ``i`` at once.

  grain's permutation is a Simon block cipher on the smallest even number of bits (at least 16)
  that holds the indices, cycle-walked back into range. Here the cipher runs once over its whole
  block (at most 4x ``num_examples``, or 2**16 values), and the walks follow that table. About
  1 ms for 50,000 examples (grain's per-index call: 150 ms), 0.7 s for ImageNet's 1.28 million.
  """
  if num_examples <= 1:
    return np.zeros(num_examples, np.int64)
  max_index = num_examples - 1
  block = math.ceil(math.log2(max_index))  # as grain computes it (in double precision)
  bits = max(block + block % 2, 16)
  word = np.uint32 if bits <= 32 else np.uint64  # a narrower word: half the memory traffic
  half = word(bits // 2)
  mask = word((1 << (bits // 2)) - 1)
  keys = [word(k & int(mask)) for k in _seed_seq_words(seed % 2**32, _SHUFFLE_ROUNDS)]

  def rotl(x, r):
    return ((x << word(r)) | (x >> (half - word(r)))) & mask

  def encrypt(values):
    left, right = values >> half, values & mask
    for i in range(0, _SHUFFLE_ROUNDS, 2):
      left ^= ((rotl(right, 1) & rotl(right, 8)) ^ rotl(right, 2)) ^ keys[i]
      right ^= ((rotl(left, 1) & rotl(left, 8)) ^ rotl(left, 2)) ^ keys[i + 1]
    return (left << half) | right

  # grain reads an index through the block's two words: when max_index is a power of two (not in
  # the block) it wraps to 0. Kept, so that the orders are grain's exactly.
  indices = np.arange(num_examples, dtype=word) & word((1 << bits) - 1)
  if bits <= _TABLE_BITS:  # the cipher of every value of the block, once; walks look it up
    cipher = encrypt(np.arange(1 << bits, dtype=word))
    step = lambda values: cipher[values]
  else:
    step = encrypt
  order = step(indices)
  walking = np.flatnonzero(order > max_index)
  while walking.size:
    order[walking] = step(order[walking])
    walking = walking[order[walking] > max_index]
  return order.astype(np.int64)


class _StepReader:
  """Step ``g`` of this process (over all epochs) -> its batch: the rows of the epoch's order
  that the step and the process own, read at once. Picklable (grain's worker processes)."""

  def __init__(self, source, *, num_examples: int, global_batch_size: int, per_process: int,
               steps_per_epoch: int, process_index: int, shuffle_seed: int | None,
               labels: np.ndarray | None = None):
    self.source, self.num_examples = source, num_examples
    self.global_batch_size, self.per_process = global_batch_size, per_process
    self.steps_per_epoch, self.process_index = steps_per_epoch, process_index
    self.shuffle_seed = shuffle_seed
    self.labels = labels  # the stratified sampler's classes; None: grain's shuffle
    self._orders: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  def __getstate__(self):
    state = dict(self.__dict__)
    del state['_orders'], state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state, _orders={}, _lock=threading.Lock())

  def _order(self, epoch: int) -> np.ndarray:
    with self._lock:  # read threads straddle an epoch's end: compute each order once
      if epoch not in self._orders:
        if len(self._orders) >= 2:
          del self._orders[min(self._orders)]
        self._orders[epoch] = (
            epoch_order(self.num_examples, self.shuffle_seed + epoch) if self.labels is None
            else stratified_order(self.labels, self.shuffle_seed, epoch))
      return self._orders[epoch]

  def rows(self, step: int) -> np.ndarray:
    """The source rows of this process's share of step ``step``."""
    epoch, k = divmod(int(step), self.steps_per_epoch)
    start = k * self.global_batch_size + self.process_index * self.per_process
    stop = min(start + self.per_process, self.num_examples)
    if self.shuffle_seed is None:
      return np.arange(start, stop, dtype=np.int64)
    return self._order(epoch)[start:stop]

  def __call__(self, step: int, _) -> dict[str, np.ndarray]:
    return read_rows(self.source, self.rows(step))


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
  if drop_remainder:
    steps_per_epoch = num_examples // global_batch_size
  else:  # a single process (checked above): its last batch is the epoch's remainder
    steps_per_epoch = -(-num_examples // global_batch_size)
  reader = _StepReader(source, num_examples=num_examples, global_batch_size=global_batch_size,
                       per_process=per_process, steps_per_epoch=steps_per_epoch,
                       process_index=process_index,
                       shuffle_seed=grain_seed(seed) if shuffle else None,
                       labels=(np.asarray(source.labels(), np.int64)
                               if shuffle and sampler == 'stratified' else None))
  dataset = grain.MapDataset.range(steps_per_epoch).repeat(num_epochs).map_with_index(reader)

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
