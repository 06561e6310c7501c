"""Class subsets and long-tailed subsets of a source: the data options of the studies.

``make_source`` (``glf_jax.data.sources``) reads three ``config.data`` keys and, when one is set,
wraps the source it built in a :class:`SubsetSource`:

* ``num_classes_subset`` (None: all classes; an int ``C``): keep ``C`` classes chosen by
  ``class_subset_seed`` (the number of classes of arXiv 2510.08852's CL-vs-NSCL study). The
  choice depends only on the seed and the dataset's number of classes, so the train and test
  splits keep the same classes. Labels are remapped to ``0..C-1`` in the sorted order of the
  original ids; ``num_classes`` is ``C``.
* ``long_tail_ratio`` (None: as is; ``rho >= 1``): the training split (``split == 'train'``
  only; every other split stays as it is, balanced test sets stay balanced) keeps
  ``n_k = floor(n_max * rho ** (-k / (C - 1)))`` examples of class ``k`` (the exponential profile
  of Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss"
  (LDAM), as in their CIFAR-10-LT code), ``k`` the (remapped) label, so class 0 is the head and
  class ``C-1`` the tail, ``n_max / n_{C-1} ~ rho``. ``n_max`` is the smallest class count of the
  split before the cut (the per-class count of a balanced split), so every class can supply its
  quota. Class ``k`` keeps its *first* ``n_k`` examples in index order: deterministic, and the
  subsets of larger ``rho`` are nested in those of smaller ones. ``rho = 1`` balances the classes
  at ``n_max`` each.
* ``examples_per_class`` (None: all; an int ``k``): the training split keeps the first ``k``
  examples of each class (in index order): a uniform subset, e.g. of the same size as a long
  tail (the studies' uniform-vs-long-tailed comparison at equal size). Not with
  ``long_tail_ratio``.
* ``class_subset_seed`` (int, default 0): seeds the choice of classes.

The wrapper keeps the source contract (``source_base``): indexing, ``num_classes``,
``image_shape``, ``class_names`` (of the kept classes), ``name``, ``split``, ``labels()`` and
``example_ids()`` (the wrapped source's ids of the kept examples, so per-example prior features
stay aligned); any other attribute (``cache_path``, ``num_skipped``, ``skipped_files``, ...) is
the wrapped source's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glf_jax.data.source_base import ImageSource
from glf_jax.data.source_base import read_rows

KEYS = ('num_classes_subset', 'class_subset_seed', 'long_tail_ratio', 'examples_per_class')


def check_subset_config(data_config: Any) -> tuple[int | None, int, float | None, int | None]:
  """``(num_classes_subset, class_subset_seed, long_tail_ratio, examples_per_class)`` of
  ``config.data``, checked.

  What needs the data (``C`` at most the dataset's classes) is checked by :func:`apply_subsets`.
  """
  get = data_config.get
  num_classes, seed, ratio = get('num_classes_subset'), get('class_subset_seed'), get(
      'long_tail_ratio')
  if num_classes is not None and (isinstance(num_classes, bool)
                                  or not isinstance(num_classes, (int, np.integer))
                                  or num_classes < 2):
    raise ValueError(f'data.num_classes_subset must be None (all classes) or an int >= 2, got '
                     f'{num_classes!r}')
  seed = 0 if seed is None else seed
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f'data.class_subset_seed must be an int >= 0, got {seed!r}')
  if ratio is not None:
    ok = (not isinstance(ratio, bool) and isinstance(ratio, (int, float, np.number))
          and math.isfinite(ratio) and ratio >= 1)
    if not ok:
      raise ValueError(f'data.long_tail_ratio must be None (as is) or a number >= 1 (max/min '
                       f'class count), got {ratio!r}')
  per_class = get('examples_per_class')
  if per_class is not None and (isinstance(per_class, bool)
                                or not isinstance(per_class, (int, np.integer)) or per_class < 1):
    raise ValueError(f'data.examples_per_class must be None (all) or an int >= 1, got '
                     f'{per_class!r}')
  if per_class is not None and ratio is not None:
    raise ValueError('data.examples_per_class (a uniform subset) and data.long_tail_ratio (a '
                     'long tail) exclude each other: set one')
  return (None if num_classes is None else int(num_classes), int(seed),
          None if ratio is None else float(ratio),
          None if per_class is None else int(per_class))


def _first_of_each_class(labels: np.ndarray, quota: np.ndarray) -> np.ndarray:
  """A mask of the first ``quota[k]`` rows of each class ``k`` (``labels``: index order)."""
  by_class = np.argsort(labels, kind='stable')
  sorted_labels = labels[by_class]
  rank = np.empty(len(labels), np.int64)
  rank[by_class] = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels)
  return rank < quota[labels]


def chosen_classes(num_classes: int, subset_size: int, seed: int) -> np.ndarray:
  """The ``subset_size`` original class ids kept, sorted: a function of the seed alone."""
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(num_classes)]))
  return np.sort(rng.choice(num_classes, size=subset_size, replace=False)).astype(np.int64)


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> np.ndarray:
  """``floor(n_max * ratio ** (-k / (C - 1)))`` for ``k = 0..C-1`` (Cao et al. 2019)."""
  if num_classes < 2:
    return np.array([n_max] * num_classes, np.int64)
  k = np.arange(num_classes)
  # The small epsilon keeps exact products (e.g. 100 * 10**-1) from flooring to one less.
  return np.floor(n_max * ratio ** (-k / (num_classes - 1)) + 1e-9).astype(np.int64)


class SubsetSource(ImageSource):
  """The rows ``rows`` of ``source``, relabelled ``labels`` (in ``0..len(class_names)-1``).

  Built by :func:`apply_subsets`; attributes it does not set are the wrapped source's.
  """

  def __init__(self, source, rows: np.ndarray, labels: np.ndarray, class_names):
    self._source = source
    self._rows = np.asarray(rows, np.int64)
    self._labels = np.asarray(labels, np.int32)
    if len(self._labels) != len(self._rows):
      raise ValueError('internal error: one label per kept row expected')
    self.name, self.split = source.name, source.split
    self.num_classes = len(class_names)
    self.class_names = tuple(class_names)
    self.image_shape = tuple(source.image_shape)
    # Class attributes of ImageSource would hide the wrapped source's through __getattr__.
    self.num_skipped = getattr(source, 'num_skipped', 0)
    self.skipped_files = getattr(source, 'skipped_files', ())

  @property
  def source(self):
    """The wrapped source."""
    return self._source

  @property
  def rows(self) -> np.ndarray:
    """Row of the wrapped source of each example."""
    return self._rows.copy()

  def __getattr__(self, name):
    # Only called when normal lookup fails; private names (and unpickling, before _source is
    # set) are not forwarded.
    if name.startswith('_') or '_source' not in self.__dict__:
      raise AttributeError(name)
    return getattr(self._source, name)

  def __len__(self) -> int:
    return len(self._rows)

  def _read(self, index):
    example = dict(self._source[int(self._rows[index])])
    example['label'] = np.int32(self._labels[index])
    return example

  def _read_rows(self, rows):
    return {**read_rows(self._source, self._rows[rows]), 'label': self._labels[rows]}

  def labels(self) -> np.ndarray:
    return self._labels.copy()

  def example_ids(self) -> list[str]:
    ids = self._source.example_ids()
    return [ids[int(r)] for r in self._rows]


def apply_subsets(source, data_config: Any):
  """``source`` with ``config.data``'s class subset and long tail applied (itself if neither)."""
  subset_size, seed, ratio, per_class = check_subset_config(data_config)
  long_tail = ratio is not None and source.split == 'train'
  uniform = per_class is not None and source.split == 'train'
  if subset_size is None and not long_tail and not uniform:
    return source
  total = int(source.num_classes)
  if subset_size is not None and subset_size > total:
    raise ValueError(f'data.num_classes_subset must be between 2 and the {total} classes of '
                     f'{source.name!r}, got {subset_size}')
  kept = (chosen_classes(total, subset_size, seed) if subset_size is not None
          else np.arange(total))
  label_map = np.full(total, -1, np.int32)
  label_map[kept] = np.arange(len(kept), dtype=np.int32)
  labels = np.asarray(source.labels(), np.int64)
  valid = (labels >= 0) & (labels < total)
  new_labels = np.where(valid, label_map[np.clip(labels, 0, total - 1)], -1)
  rows = np.flatnonzero(new_labels >= 0)
  if long_tail:
    counts = np.bincount(new_labels[rows], minlength=len(kept))
    n_max = int(counts.min())
    if n_max == 0:
      raise ValueError(f'data.long_tail_ratio needs every class in the {source.split!r} split; '
                       f'class {int(np.argmin(counts))} has no examples')
    quota = long_tail_counts(n_max, len(kept), ratio)
    if quota.min() < 1:
      raise ValueError(f'data.long_tail_ratio={ratio:g} leaves class {len(kept) - 1} with no '
                       f'examples (n_max={n_max}); use a ratio <= {n_max}')
    rows = rows[_first_of_each_class(new_labels[rows], quota)]
  if uniform:
    rows = rows[_first_of_each_class(new_labels[rows], np.full(len(kept), per_class))]
  class_names = getattr(source, 'class_names', None) or tuple(str(c) for c in range(total))
  return SubsetSource(source, rows, new_labels[rows], [class_names[int(c)] for c in kept])
