"""The decoded-image cache: every image of a split decoded (and resized) once, to ``.npy``.

``write(cache_path, decode=..., count=..., ...)`` decodes images ``0..count-1`` with a thread pool
into a directory; ``build(cache_path, root=..., split=..., entries=..., ...)`` does it for the
files of an image folder, ``TfdsSource`` (``data.decode_cache``) for the rows of a TFDS split. The
directory holds:

* ``images.npy``: uint8 ``[N, H, W, 3]`` (read back as a read-only memory map);
* ``labels.npy``: int32 ``[N]``;
* ``index.json``: what was decoded (classes, files or rows, image shape, skipped files and
  their errors).

Threads, not processes: Pillow releases the GIL while it decodes and resizes large images, and
threads write straight into the output memory map, with no copies between processes and no fork
of a process that has started JAX. (Tiny images such as CIFAR's are bound by Python overhead
instead: about 5,000 images/s on 2 cores, once.)

Why ``.npy`` memory maps rather than ArrayRecord: decoded pixels need no per-record
deserialisation, a read is a slice of the page cache (an epoch is not bound by decoding or
parsing), worker processes share the pages, and NumPy writes and reads them with no extra
dependency. The price is raw-pixel disk use (N*H*W*3 bytes: 150 MB for CIFAR-10's training set).

The cache is written into a temporary directory and renamed into place, so a reader never sees
half a cache; ``is_complete`` says whether one is there. A build that would not fit on the disk
is refused before it starts. ``Decoded(cache_path)`` opens one for reading.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import pathlib
import shutil
from typing import Any, Callable, Sequence
import uuid

from absl import logging
import numpy as np
from PIL import Image

from glf_jax.runtime import progress
from glf_jax.data.source_base import CorruptImageError
from glf_jax.data.source_base import resize_and_center_crop

# Part of every cache fingerprint: bump it when the files' layout or meaning changes.
CACHE_FORMAT = 2  # 2: 16-bit images scaled to 8 bits (format 1 saturated them)
CACHE_FILES = ('index.json', 'images.npy', 'labels.npy')


# 16-bit greyscale (PNG): Pillow's modes for it, by byte order.
_SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')


def _to_8bit(image: Image.Image) -> Image.Image:
  """16-bit (``I;16*``) and 32-bit integer (``I``) greyscale as 8-bit ``L``, 0..65535 to
  0..255 (``convert('RGB')`` would clip them at 255: a white image); ``F`` is refused."""
  if image.mode == 'F':
    raise ValueError('floating-point pixels (PIL mode F) are not supported; save the image with '
                     '8 or 16 bits per channel')
  values = np.asarray(image).astype(np.int64)
  if image.mode == 'I' and values.size and (values.min() < 0 or values.max() > 65535):
    # Read as 16-bit data, the only integer greyscale PNG holds; other ranges have no known scale.
    raise ValueError(f'32-bit integer pixels in {values.min()}..{values.max()}: only 0..65535 '
                     '(16-bit) can be scaled to 8 bits; save the image with 8 or 16 bits per '
                     'channel')
  return Image.fromarray(((values + 128) // 257).astype(np.uint8))


def decode_image(path: str, image_size: int) -> np.ndarray:
  """Decodes one file to uint8 RGB, resized and centre-cropped when ``image_size > 0``; 16-bit
  greyscale is scaled to 8 bits."""
  try:
    with Image.open(path) as image:
      if image_size:
        # Let the JPEG decoder downscale by a power of two first: far less work for big photos.
        image.draft('RGB', (image_size, image_size))
      image.load()  # decode now, inside the try: truncated files fail here
      if image.mode in _SIXTEEN_BIT_MODES or image.mode in ('I', 'F'):
        image = _to_8bit(image)
      if image.mode != 'RGB':
        image = image.convert('RGB')
      if image_size:
        return resize_and_center_crop(image, image_size)
      return np.asarray(image, dtype=np.uint8)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise CorruptImageError(path, f'{type(e).__name__}: {e}') from e


def is_complete(cache_path: pathlib.Path) -> bool:
  """Whether ``cache_path`` holds a whole cache (a half-built one is never renamed there)."""
  return all((cache_path / f).is_file() for f in CACHE_FILES)


def remove_stale(cache_root: pathlib.Path, prefix: str, keep: pathlib.Path) -> None:
  """Removes the caches in ``cache_root`` whose names start with ``prefix``, except ``keep``."""
  if not cache_root.is_dir():
    return
  for old in cache_root.iterdir():
    if old.name.startswith(prefix) and old != keep:
      logging.info('removing stale image cache %s', old)
      shutil.rmtree(old, ignore_errors=True)


class Decoded:
  """A built cache, open for reading: ``index`` (``index.json``), ``images`` (uint8
  ``[N, H, W, 3]``, a read-only memory map) and ``labels`` (int32 ``[N]``). Pickled (for grain's
  worker processes) as its path: the pixels are mapped again, never copied."""

  def __init__(self, cache_path: pathlib.Path):
    self.path = pathlib.Path(cache_path)
    with open(self.path / 'index.json', encoding='utf-8') as f:
      self.index = json.load(f)
    self.labels = np.load(self.path / 'labels.npy', allow_pickle=False)
    self._map_images()

  def _map_images(self) -> None:
    # A plain ndarray view of the memory map: indexing it costs no memmap bookkeeping.
    self.images = np.load(self.path / 'images.npy', mmap_mode='r').view(np.ndarray)

  def __getstate__(self):
    state = dict(self.__dict__)
    del state['images']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._map_images()


def build(cache_path: pathlib.Path, *, root: pathlib.Path, split: str,
          class_names: Sequence[str], entries: Sequence[tuple[str, int, Any, Any]],
          image_size: int, skip_corrupt: bool, decode_workers: int) -> None:
  """Decodes the files of ``root/split`` into the cache directory ``cache_path``.

  Args:
    cache_path: the cache directory; built next to it, then renamed into place.
    root, split: the image folder; the files are ``root/split/<relative path>``.
    class_names: the class of each label (recorded in ``index.json``).
    entries: ``(relative path, label, ...)`` of every file, in cache order.
    image_size: > 0 resizes and centre-crops every image to a square of that side; 0 keeps the
      size, which must then be the same for every image.
    skip_corrupt: leave undecodable files out (and list them in ``index.json``) rather than raise
      ``CorruptImageError``.
    decode_workers: decoding threads.
  """
  split_dir = root / split
  paths = [os.fspath(split_dir / entry[0]) for entry in entries]
  write(cache_path, decode=lambda row: decode_image(paths[row], image_size), count=len(paths),
        labels=np.array([entry[1] for entry in entries], np.int32), what=os.fspath(split_dir),
        names=[entry[0] for entry in entries], paths=paths, skip_corrupt=skip_corrupt,
        decode_workers=decode_workers,
        index={'root': os.fspath(root), 'split': split, 'image_size': image_size,
               'class_names': list(class_names)})


def write(cache_path: pathlib.Path, *, decode: Callable[[int], np.ndarray], count: int,
          labels: np.ndarray, what: str, index: dict[str, Any], decode_workers: int,
          names: Sequence[str] | None = None, paths: Sequence[str] | None = None,
          skip_corrupt: bool = False) -> None:
  """Decodes images ``0..count-1`` (``decode(row)``: uint8 ``[H, W, 3]``, the same shape for
  every row) into the cache directory ``cache_path``, with their ``labels``.

  ``what`` names the images in messages; ``index`` is recorded in ``index.json`` with the image
  shape, the count and, when ``names`` (one per row) are given, the kept rows' names. With
  ``skip_corrupt``, rows whose ``decode`` raises ``CorruptImageError`` are left out (and listed
  in ``index.json``); else the first one stops the build. ``paths`` (one per row) name the rows in
  errors. ``decode_workers`` threads decode.
  """
  # Shown, not logged: the first run of a large dataset decodes for minutes before training.
  progress.announce(f'decoding {count} images of {what} into {cache_path} (once; later runs read '
                    'this cache)')
  cache_root = cache_path.parent
  cache_root.mkdir(parents=True, exist_ok=True)
  tmp = cache_root / f'.tmp-{cache_path.name}-{uuid.uuid4().hex[:8]}'
  tmp.mkdir()
  try:
    images_file = tmp / 'images.npy'
    kept, skipped, shape = _decode_all(decode, count, images_file, what, paths=paths,
                                       skip_corrupt=skip_corrupt, decode_workers=decode_workers)
    np.save(tmp / 'labels.npy', np.asarray(labels, np.int32)[kept], allow_pickle=False)
    name = (lambda row: names[row]) if names is not None else (lambda row: f'row {row}')
    record = {
        'format': CACHE_FORMAT, **index,
        'image_shape': list(shape),
        'num_images': len(kept),
        'skipped': [{'file': name(i), 'error': err} for i, err in skipped],
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    if names is not None:
      record['files'] = [names[i] for i in kept]
    with open(tmp / 'index.json', 'w', encoding='utf-8') as f:
      json.dump(record, f)
    try:
      os.rename(tmp, cache_path)  # atomic: readers see all of the cache or none of it
    except OSError:
      if not is_complete(cache_path):  # not a concurrent builder that got there first
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _check_room(folder: pathlib.Path, needed: int, what: str) -> None:
  """Refuses a cache that would not fit on the disk of ``folder``, before writing it."""
  free = shutil.disk_usage(folder).free
  if needed > free:
    raise OSError(f'the decoded images of {what} need {needed / 2**30:.1f} GiB in {folder}, '
                  f'which has {free / 2**30:.1f} GiB free; set data.cache_dir to a folder with '
                  'room, or a smaller data.image_size')


def _on_corrupt(error: CorruptImageError, skip_corrupt: bool) -> None:
  if not skip_corrupt:
    # The first undecodable file stops the build: say how to go on without such files.
    raise CorruptImageError(error.path, f'{getattr(error, "reason", error)}; set '
                            '--config.data.skip_corrupt=True to leave undecodable files out'
                            ) from error
  logging.warning('skipping corrupt image: %s', error)


def _decode_all(decode: Callable[[int], np.ndarray], count: int, images_file: pathlib.Path,
                what: str, *, paths: Sequence[str] | None, skip_corrupt: bool,
                decode_workers: int):
  """Decodes rows ``0..count-1`` into ``images_file``; returns (kept rows, [(row, error)],
  shape)."""
  errors: dict[int, str] = {}
  first, shape = 0, None
  # The first decodable image fixes [H, W, 3] when sizes are kept as they are.
  while shape is None and first < count:
    try:
      shape = decode(first).shape
    except CorruptImageError as e:
      _on_corrupt(e, skip_corrupt)
      errors[first] = str(e)
      first += 1
  if shape is None:
    raise ValueError(f'no decodable image in {what}')
  _check_room(images_file.parent, count * int(np.prod(shape)), what)
  images = np.lib.format.open_memmap(images_file, mode='w+', dtype=np.uint8,
                                     shape=(count, *shape))

  def name(row):
    return paths[row] if paths is not None else f'row {row} of {what}'

  def decode_rows(rows: range) -> dict[int, str]:
    failed = {}
    for row in rows:
      try:
        image = decode(row)
      except CorruptImageError as e:
        _on_corrupt(e, skip_corrupt)
        failed[row] = str(e)
        continue
      if image.shape != shape:
        raise ValueError(
            f'image {name(row)} has shape {image.shape}, but {name(first)} has {shape}; '
            'set data.image_size to resize all images to one size')
      images[row] = image
    return failed

  chunk = 256
  chunks = [range(s, min(s + chunk, count)) for s in range(first, count, chunk)]
  done = first
  with concurrent.futures.ThreadPoolExecutor(decode_workers) as pool, progress.Progress(
      count, desc='decoding images', unit='img', initial=first) as bar:
    futures = {pool.submit(decode_rows, rows): len(rows) for rows in chunks}
    try:
      for future in concurrent.futures.as_completed(futures):
        errors.update(future.result())
        done += futures[future]
        bar.update(done)
    except BaseException:
      for future in futures:
        future.cancel()
      raise
  images.flush()
  kept = [row for row in range(count) if row not in errors]
  if errors:
    logging.warning('skipped %d corrupt image(s) in %s, e.g. %s', len(errors), what,
                    errors[min(errors)])
    del images
    _compact_rows(images_file, kept)
  return kept, sorted(errors.items()), shape


def _compact_rows(images_file: pathlib.Path, kept: Sequence[int]) -> None:
  """Rewrites ``images_file`` keeping only the rows ``kept`` (in order)."""
  full = np.load(images_file, mmap_mode='r')
  compact_file = images_file.with_name('images.compact.npy')
  compact = np.lib.format.open_memmap(compact_file, mode='w+', dtype=np.uint8,
                                      shape=(len(kept), *full.shape[1:]))
  kept = np.asarray(kept, np.int64)
  for start in range(0, len(kept), 4096):
    compact[start:start + 4096] = full[kept[start:start + 4096]]
  compact.flush()
  del compact, full
  os.replace(compact_file, images_file)
