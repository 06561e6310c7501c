"""Building the decoded-image cache of an image folder: every file decoded once, to ``.npy``.

``build(cache_path, root=..., split=..., entries=..., ...)`` decodes the files of a split with a
thread pool into a directory that holds:

* ``images.npy``: uint8 ``[N, H, W, 3]`` (read back as a read-only memory map);
* ``labels.npy``: int32 ``[N]``;
* ``index.json``: classes, files, image shape, skipped files and their errors.

Threads, not processes: Pillow releases the GIL while it decodes and resizes large images, and
threads write straight into the output memory map, with no copies between processes and no fork
of a process that has started JAX. (Tiny images such as CIFAR's are bound by Python overhead
instead: about 5,000 images/s on 2 cores, once.)

Why ``.npy`` memory maps rather than ArrayRecord: decoded pixels need no per-record
deserialisation, a read is a slice of the page cache (an epoch is not bound by decoding or
parsing), worker processes share the pages, and NumPy writes and reads them with no extra
dependency. The price is raw-pixel disk use (N*H*W*3 bytes: 150 MB for CIFAR-10's training set).

The cache is written into a temporary directory and renamed into place, so a reader never sees
half a cache; ``is_complete`` says whether one is there. Reading it is ``ImageFolderSource``'s.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import pathlib
import shutil
from typing import Any, Sequence
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
  # Shown, not logged: the first run of a large folder decodes for minutes before training.
  progress.announce(f'decoding {len(paths)} images of {split_dir} into {cache_path} (once; '
                    'later runs read this cache)')
  cache_root = cache_path.parent
  cache_root.mkdir(parents=True, exist_ok=True)
  tmp = cache_root / f'.tmp-{cache_path.name}-{uuid.uuid4().hex[:8]}'
  tmp.mkdir()
  try:
    images_file = tmp / 'images.npy'
    kept, skipped, shape = _decode_all(paths, images_file, split_dir, image_size=image_size,
                                       skip_corrupt=skip_corrupt, decode_workers=decode_workers)
    labels = np.array([entries[i][1] for i in kept], np.int32)
    np.save(tmp / 'labels.npy', labels, allow_pickle=False)
    index = {
        'format': CACHE_FORMAT,
        'root': os.fspath(root),
        'split': split,
        'image_size': image_size,
        'image_shape': list(shape),
        'num_images': len(kept),
        'class_names': list(class_names),
        'files': [entries[i][0] for i in kept],
        'skipped': [{'file': entries[i][0], 'error': err} for i, err in skipped],
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    with open(tmp / 'index.json', 'w', encoding='utf-8') as f:
      json.dump(index, f)
    try:
      os.rename(tmp, cache_path)  # atomic: readers see all of the cache or none of it
    except OSError:
      if not is_complete(cache_path):  # not a concurrent builder that got there first
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _on_corrupt(error: CorruptImageError, skip_corrupt: bool) -> None:
  if not skip_corrupt:
    # The first undecodable file stops the build: say how to go on without such files.
    raise CorruptImageError(error.path, f'{getattr(error, "reason", error)}; set '
                            '--config.data.skip_corrupt=True to leave undecodable files out'
                            ) from error
  logging.warning('skipping corrupt image: %s', error)


def _decode_all(paths: Sequence[str], images_file: pathlib.Path, split_dir: pathlib.Path, *,
                image_size: int, skip_corrupt: bool, decode_workers: int):
  """Decodes ``paths`` into ``images_file``; returns (kept rows, [(row, error)], shape)."""
  errors: dict[int, str] = {}
  first, shape = 0, None
  # The first decodable image fixes [H, W, 3] when sizes are kept as they are.
  while shape is None and first < len(paths):
    try:
      shape = decode_image(paths[first], image_size).shape
    except CorruptImageError as e:
      _on_corrupt(e, skip_corrupt)
      errors[first] = str(e)
      first += 1
  if shape is None:
    raise ValueError(f'no decodable image in {split_dir}')
  images = np.lib.format.open_memmap(images_file, mode='w+', dtype=np.uint8,
                                     shape=(len(paths), *shape))

  def decode_rows(rows: range) -> dict[int, str]:
    failed = {}
    for row in rows:
      try:
        image = decode_image(paths[row], image_size)
      except CorruptImageError as e:
        _on_corrupt(e, skip_corrupt)
        failed[row] = str(e)
        continue
      if image.shape != shape:
        raise ValueError(
            f'image {paths[row]} has shape {image.shape}, but {paths[first]} has {shape}; '
            'set data.image_size to resize all images to one size')
      images[row] = image
    return failed

  chunk = 256
  chunks = [range(s, min(s + chunk, len(paths))) for s in range(first, len(paths), chunk)]
  done = first
  with concurrent.futures.ThreadPoolExecutor(decode_workers) as pool, progress.Progress(
      len(paths), desc='decoding images', unit='img', initial=first) as bar:
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
  kept = [row for row in range(len(paths)) if row not in errors]
  if errors:
    logging.warning('skipped %d corrupt image(s) in %s, e.g. %s', len(errors), split_dir,
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
