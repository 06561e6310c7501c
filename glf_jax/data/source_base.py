"""What every random-access source shares: the base class, the resize, the split check, errors.

A source is a random-access sequence that grain reads by index:

* ``len(source)`` and ``source[i] -> {'image': uint8 [H, W, 3], 'label': int32 scalar,
  'index': int32 scalar}`` (``index`` is ``i``: batches say which examples they hold, e.g. for
  per-example prior features);
* ``source.num_classes``, ``source.image_shape`` (``(H, W, 3)``) and ``source.class_names``;
* ``source.example_ids()``: a stable string id per example, in index order;
* ``source.labels()``: every example's label, int32 ``[n]`` in index order (what class subsets
  select by; ``glf_jax.data.subsets``);
* ``source.num_skipped`` and ``source.skipped_files``: undecodable files left out (image folders
  read with ``skip_corrupt``; 0 and ``()`` elsewhere).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image


class DatasetNotPreparedError(ValueError):
  """A TFDS dataset is not prepared (as ArrayRecord) in the data directory."""


class CorruptImageError(ValueError):
  """An image file could not be decoded; ``path`` names it."""

  def __init__(self, path: str | os.PathLike[str], reason: str):
    self.path = os.fspath(path)
    self.reason = reason
    super().__init__(f'cannot decode image file {self.path}: {reason}')


class ImageSource:
  """Base of every source: indexing, bounds checks and the common attributes.

  Subclasses set ``name``, ``split``, ``num_classes``, ``image_shape`` and ``class_names`` and
  implement ``__len__`` and ``_read(i)``.
  """

  name: str
  split: str
  num_classes: int
  image_shape: tuple[int, int, int]
  class_names: tuple[str, ...]
  # Files left out because they could not be decoded (image folders with skip_corrupt).
  num_skipped: int = 0
  skipped_files: tuple[str, ...] = ()

  def __len__(self) -> int:
    raise NotImplementedError

  def _read(self, index: int) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    length = len(self)
    if index < 0:
      index += length
    if not 0 <= index < length:
      raise IndexError(f'index {index} out of range for {self!r} of length {length}')
    return {**self._read(index), 'index': np.int32(index)}

  def _read_rows(self, rows: np.ndarray) -> dict[str, np.ndarray] | None:
    """``{'image': [b, H, W, 3], 'label': [b]}`` of ``rows`` in one read, or None where the
    source reads one example at a time (sources holding arrays override it)."""
    del rows
    return None

  def read_batch(self, rows) -> dict[str, np.ndarray]:
    """The examples ``rows`` (in range), stacked: the same arrays as stacking ``self[i]``."""
    rows = np.asarray(rows, np.int64)
    batch = self._read_rows(rows)
    if batch is None:
      return stack_examples([self[int(i)] for i in rows])
    return {**batch, 'index': rows.astype(np.int32)}

  def labels(self) -> np.ndarray:
    """Every example's label, int32 ``[n]`` in index order.

    Sources that hold their labels in ``_labels`` (digits, image folders) return them; otherwise
    every example is read, which subclasses with a cheaper way (TFDS) override.
    """
    held = getattr(self, '_labels', None)
    if held is not None and len(held) == len(self):
      return np.array(held, dtype=np.int32)
    return np.array([int(self._read(i)['label']) for i in range(len(self))], dtype=np.int32)

  def example_ids(self) -> list[str]:
    """A stable id per example, in index order (what per-example files are aligned to).

    Default ``'<name>/<split>/<i>'``: for sources whose order is fixed by their stored files
    (TFDS ArrayRecords, scikit-learn's digits). Sources that select or sort files override it.
    """
    return [f'{self.name}/{self.split}/{i}' for i in range(len(self))]

  def __repr__(self) -> str:
    return (f'{type(self).__name__}(name={self.name!r}, split={self.split!r}, len={len(self)}, '
            f'image_shape={self.image_shape}, num_classes={self.num_classes})')


def stack_examples(examples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Examples (flat dicts of arrays) as one batch: each entry stacked along a new first axis."""
  return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def read_rows(source, rows) -> dict[str, np.ndarray]:
  """The examples ``rows`` of any random-access source, stacked (``source.read_batch`` where the
  source has it)."""
  read_batch = getattr(source, 'read_batch', None)
  if read_batch is not None:
    return read_batch(rows)
  return stack_examples([source[int(i)] for i in rows])


def resize_and_center_crop(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
  """Resizes the shorter side to ``size`` (bicubic, antialiased), then centre-crops a square.

  Keeping the aspect ratio (rather than squashing) leaves objects undistorted; the random crops of
  the augmentations then work on a square canvas.
  """
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  width, height = image.size
  if (width, height) != (size, size):
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
  return np.asarray(image.convert('RGB'), dtype=np.uint8)


def unseen_classes_message(data: str, train_split: str, test_split: str,
                           classes: Sequence[str]) -> str:
  """The refusal of an evaluation whose ``test_split`` has ``classes`` that ``train_split`` has
  no example of (an image folder's class only in ``test/``): its labels could never be
  predicted, and the accuracies would silently be capped at the other classes' share."""
  shown = ', '.join(repr(c) for c in list(classes)[:10]) + (', ...' if len(classes) > 10 else '')
  return (f'{data}: the {test_split!r} split has {len(classes)} class(es) that the '
          f'{train_split!r} split has no example of ({shown}); a classifier trained on '
          f'{train_split!r} cannot predict them. Give them training examples, or remove them from '
          f'{test_split!r}')


def check_split(split: str, allowed: Sequence[str], what: str) -> None:
  """Raises ValueError, listing ``allowed``, unless ``split`` is one of them."""
  if split not in allowed:
    raise ValueError(f'unknown split {split!r} for {what}; expected one of {sorted(allowed)}')
