"""Frozen-encoder features of a whole source, extracted once and cached (SPEC §4).

``extract_features(encode_fn, source, batch_size=..., cache_path=..., cache_key=...)`` reads the
source in order, in fixed-size batches (the last one padded, so a jitted ``encode_fn`` compiles
once), and returns ``(features float32 [n, d], labels int32 [n])``. With ``cache_path`` the
result is stored as ``.npz`` (written atomically) and reused while ``cache_key`` (what produced
the features: the run, its step, the data) and the row count match; an unreadable cache file is
recomputed with a warning.
"""

from __future__ import annotations

import os
from typing import Callable

from absl import logging
import numpy as np


def _load_cache(path: str, cache_key: str, num_rows: int):
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      if str(f['cache_key']) != cache_key or f['labels'].shape[0] != num_rows:
        return None
      return f['features'].astype(np.float32), f['labels'].astype(np.int32)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('feature cache %s is unreadable (%s); recomputing', path, e)
    return None


def _save_cache(path: str, cache_key: str, features, labels) -> None:
  tmp = f'{path}.tmp-{os.getpid()}.npz'
  np.savez(tmp, features=features, labels=labels, cache_key=np.asarray(cache_key))
  os.replace(tmp, path)


def extract_features(encode_fn: Callable[[np.ndarray], np.ndarray], source, *, batch_size: int,
                     cache_path: str | None = None, cache_key: str = ''):
  """Features and labels of every row of ``source`` (see the module docstring)."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  n = len(source)
  if n == 0:
    raise ValueError('cannot extract features of an empty source')
  if cache_path:
    cached = _load_cache(cache_path, cache_key, n)
    if cached is not None:
      return cached
  features, labels = [], []
  for start in range(0, n, batch_size):
    rows = [source[i] for i in range(start, min(start + batch_size, n))]
    images = np.stack([r['image'] for r in rows])
    real = len(rows)
    if real < batch_size:  # pad with the last row: one input shape, one compilation
      images = np.concatenate([images, np.repeat(images[-1:], batch_size - real, axis=0)])
    features.append(np.asarray(encode_fn(images), np.float32)[:real])
    labels.extend(int(r['label']) for r in rows)
  features = np.concatenate(features)
  labels = np.asarray(labels, np.int32)
  if cache_path:
    _save_cache(cache_path, cache_key, features, labels)
  return features, labels
