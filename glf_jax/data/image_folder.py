"""Image folders ``root/<split>/<class>/*.{jpg,jpeg,png}`` as a source: scanning and reading.

The files are decoded once into an on-disk cache (``glf_jax.data.decode_cache`` builds it), then
read by index from its memory map.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Sequence

from glf_jax.data import decode_cache
from glf_jax.data.source_base import CorruptImageError
from glf_jax.data.source_base import ImageSource
from glf_jax.data.source_base import unseen_classes_message

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
# Other names of an evaluation split: a missing split's error names the one the folder has.
_SPLIT_ALTERNATIVES = {'test': ('val', 'validation', 'valid'),
                       'val': ('validation', 'valid', 'test'),
                       'validation': ('val', 'valid', 'test')}


def subfolders(directory: pathlib.Path) -> list[str]:
  """The folders in ``directory``, sorted: an image folder's splits, or a split's classes
  (hidden ones are neither)."""
  return sorted(d.name for d in directory.iterdir() if d.is_dir() and not d.name.startswith('.'))


def missing_split_message(root: pathlib.Path, split: str, splits: Sequence[str],
                          flag: str = 'eval.test_split') -> str:
  """Unknown ``split``, the splits there are and, when the folder has another name for it
  (``val`` for ``test``), the flag that selects that one."""
  message = f'unknown split {split!r} for image folder {root}; expected one of {sorted(splits)}'
  alternative = next((a for a in _SPLIT_ALTERNATIVES.get(split, ()) if a in splits), None)
  if alternative:
    message += f'; to evaluate on {alternative!r} instead, set --config.{flag}={alternative}'
  return message


def check_image_folder_split(root: str | os.PathLike[str], split: str, flag: str) -> None:
  """Raises ValueError (with the flag to set) if the image folder ``root`` lacks ``split``; for
  a check before training that the evaluation after it will find its data."""
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    return  # the training source reports a missing root as it starts
  splits = subfolders(root)
  if split not in splits:
    raise ValueError(missing_split_message(root, split, splits, flag))


def check_image_folder_classes(root: str | os.PathLike[str], train_split: str,
                               test_split: str) -> None:
  """Raises ValueError if the image folder's ``test_split`` has class folders that its
  ``train_split`` lacks (``source_base.unseen_classes_message``): before training, so that the
  evaluation after it does not find out."""
  root = pathlib.Path(root).expanduser()
  if not ((root / train_split).is_dir() and (root / test_split).is_dir()):
    return  # a missing split is reported by check_image_folder_split / the source
  unseen = sorted(set(subfolders(root / test_split)) - set(subfolders(root / train_split)))
  if unseen:
    raise ValueError(unseen_classes_message(f'image folder {root}', train_split, test_split,
                                            unseen))


def scan_split(split_dir: pathlib.Path, class_names: Sequence[str]):
  """Lists ``(relative path, label, size, mtime_ns)`` for every image of a split, sorted."""
  entries = []
  for label, class_name in enumerate(class_names):
    class_dir = split_dir / class_name
    if not class_dir.is_dir():
      continue  # this split lacks the class; labels still follow the union of all splits
    found = []
    with os.scandir(class_dir) as it:
      for entry in it:
        # Hidden files are skipped: e.g. macOS '._x.jpg' resource forks are not images.
        if entry.name.startswith('.') or not entry.name.lower().endswith(IMAGE_EXTENSIONS):
          continue
        try:
          if not entry.is_file():
            continue
          stat = entry.stat()
        except OSError:
          # A link that cannot be followed (a loop: ELOOP): listed with the link's own stat, so
          # that decoding it fails like a corrupt file: one error naming it, or skipped with
          # data.skip_corrupt.
          stat = entry.stat(follow_symlinks=False)
        found.append((f'{class_name}/{entry.name}', label, stat.st_size, stat.st_mtime_ns))
    if not found:
      raise ValueError(f'class folder {class_dir} holds no images; expected at least one file '
                       f'ending in {"/".join(IMAGE_EXTENSIONS)} (remove the folder or add images)')
    entries.extend(sorted(found))
  return entries


class ImageFolderSource(ImageSource):
  """Images in ``root/<split>/<class>/*.{jpg,jpeg,png}``, decoded once into a cache.

  Class names are the sorted union of the class folders of all splits, so labels agree between
  splits. On first use every file is decoded into ``<cache_dir>/<split>-<size>-<fingerprint>/``
  (``decode_cache``: ``images.npy`` read back as a read-only memory map, ``labels.npy``,
  ``index.json``). Use TFDS or a smaller ``image_size`` for ImageNet-scale folders: the cache
  holds raw pixels.

  The fingerprint covers the class names, every file's path, size and mtime, and ``image_size``:
  any change to the files makes a new cache (stale ones are removed). With ``skip_corrupt``,
  undecodable files are left out: ``num_skipped`` and ``skipped_files`` (paths relative to the
  split folder) say which.
  """

  def __init__(self, root: str | os.PathLike[str], split: str, *, image_size: int = 0,
               cache_dir: str | os.PathLike[str] | None = None, skip_corrupt: bool = False,
               decode_workers: int | None = None):
    root = pathlib.Path(root).expanduser()
    layout = 'expected <root>/<split>/<class>/*.jpg|*.jpeg|*.png'
    if not root.is_dir():
      raise FileNotFoundError(f'image folder root {root} does not exist ({layout})')
    splits = subfolders(root)
    if not splits:
      raise ValueError(f'image folder root {root} has no split folders ({layout})')
    if split not in splits:
      raise ValueError(missing_split_message(root, split, splits))
    class_names = sorted({c for s in splits for c in subfolders(root / s)})
    if not any((root / split / c).is_dir() for c in class_names):
      raise ValueError(f'split folder {root / split} has no class folders ({layout})')
    entries = scan_split(root / split, class_names)

    self.name, self.split = 'image_folder', split
    self.root = root
    self.class_names = tuple(class_names)
    self.num_classes = len(class_names)
    self._image_size = int(image_size)
    self._skip_corrupt = bool(skip_corrupt)
    self._decode_workers = decode_workers or os.cpu_count() or 1
    size_tag = f'{self._image_size}px' if self._image_size else 'native'
    fingerprint = hashlib.sha256(json.dumps(
        [decode_cache.CACHE_FORMAT, self._image_size, class_names, entries]).encode()
    ).hexdigest()[:16]
    self.cache_root = (pathlib.Path(cache_dir).expanduser() if cache_dir
                       else root.parent / f'{root.name}.glf_jax_cache')
    self.cache_path = self.cache_root / f'{split}-{size_tag}-{fingerprint}'
    self.cache_built = False  # True when this call decoded the files (no usable cache)

    if not decode_cache.is_complete(self.cache_path):
      decode_cache.build(self.cache_path, root=root, split=split, class_names=self.class_names,
                         entries=entries, image_size=self._image_size,
                         skip_corrupt=self._skip_corrupt, decode_workers=self._decode_workers)
      self.cache_built = True
    decode_cache.remove_stale(self.cache_root, f'{split}-{size_tag}-', keep=self.cache_path)
    self._open_cache()

  def __len__(self) -> int:
    return len(self._labels)

  def _read(self, index):
    return {'image': self._decoded.images[index], 'label': self._labels[index]}

  def _read_rows(self, rows):
    return {'image': self._decoded.images[rows], 'label': self._labels[rows]}

  def example_ids(self) -> list[str]:
    """``'image_folder/<split>/<class>/<file>'`` of each decoded image (skipped files are not
    examples), independent of where ``root`` lies."""
    return [f'image_folder/{self.split}/{f}' for f in self.index['files']]

  def _open_cache(self) -> None:
    self._decoded = decode_cache.Decoded(self.cache_path)
    self.index = self._decoded.index
    # Relative to the split folder, in cache order; how many: num_skipped.
    self.skipped_files = tuple(s['file'] for s in self.index['skipped'])
    self.num_skipped = len(self.skipped_files)
    if self.skipped_files and not self._skip_corrupt:
      first = self.index['skipped'][0]
      # The recorded error is a whole CorruptImageError message: keep only its reason.
      reason, marker = first['error'], f'{first["file"]}: '
      if reason.startswith('cannot decode image file ') and marker in reason:
        reason = reason.split(marker, 1)[1]
      raise CorruptImageError(
          self.root / self.split / first['file'],
          f'{reason} ({self.num_skipped} undecodable file(s) in {self.root / self.split}; set '
          '--config.data.skip_corrupt=True to leave them out)')
    self._labels = self._decoded.labels
    self.image_shape = tuple(self._decoded.images.shape[1:])
