"""Frozen-encoder features of a whole source, extracted once and cached (docs/maths.md §4).

* ``extract_features(encode_fn, source, batch_size=..., cache_path=..., cache_key=...)`` reads the
  source in order, in fixed-size batches (the last one padded by repeating its last row, so a
  jitted ``encode_fn`` compiles once), and returns ``(features float32 [n, d], labels int32
  [n])``. With ``cache_path`` the result is stored as ``.npz`` (``features``, ``labels`` and
  ``cache_key`` as a 0-d string array; written to a temporary file in the same directory, then
  ``os.replace``-d, so a reader never sees half a file) and reused while the stored ``cache_key``
  (what produced the features: the run, its step, the data) and the row count match. An
  unreadable cache file is recomputed with a warning.
* ``make_encode_fn(graphdef, state, image_size=..., mean=..., std=...)``: the jitted
  ``uint8 images -> features`` of an ``nnx.split`` encoder or backbone, in eval mode (BatchNorm
  with its running statistics), after ``augment.eval_transform``; ``make_encode``: the same
  pure and unjitted (what the compile mode compiles for a target).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Sequence

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from glf_jax.runtime import fileio
from glf_jax.runtime import progress
from glf_jax.data import augment

# Batches dispatched to ``encode_fn`` before the oldest result is fetched: JAX runs a jitted
# ``encode_fn`` asynchronously, so reading the next batch overlaps with encoding this one.
_IN_FLIGHT_BATCHES = 2


def _load_cache(path: str, cache_key: str, num_rows: int):
  """``(features, labels)`` stored at ``path`` for ``cache_key`` and ``num_rows``, else None."""
  if not fileio.exists(path):
    return None
  try:
    with fileio.open_file(path, 'rb') as f, np.load(f, allow_pickle=False) as stored:
      stored_key = str(stored['cache_key'])
      features, labels = stored['features'], stored['labels']
      if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f'features {features.shape} and labels {labels.shape} do not match')
  except Exception as e:  # pylint: disable=broad-except  # any unreadable file is recomputed
    logging.warning('feature cache %s is unreadable (%s: %s); recomputing', path,
                    type(e).__name__, e)
    return None
  if stored_key != cache_key or labels.shape[0] != num_rows:
    logging.info('feature cache %s is stale (key %r, %d rows; want %r, %d rows); recomputing',
                 path, stored_key, labels.shape[0], cache_key, num_rows)
    return None
  logging.info('features of %d rows read from %s', num_rows, path)
  return features.astype(np.float32), labels.astype(np.int32)


def _save_cache(path: str, cache_key: str, features: np.ndarray, labels: np.ndarray) -> None:
  """Writes the cache atomically (``fileio.atomic_write``): a reader never sees half a file."""
  with fileio.atomic_write(path) as f:
    np.savez(f, features=features, labels=labels, cache_key=np.asarray(cache_key))


def _read_batch(source, start: int, stop: int, batch_size: int):
  """Images ``[batch_size, H, W, C]`` (rows ``start..stop-1``, padded) and the real labels."""
  rows = [source[i] for i in range(start, stop)]
  images = np.stack([np.asarray(row['image']) for row in rows])
  labels = np.asarray([int(row['label']) for row in rows], np.int32)
  if len(rows) < batch_size:  # repeat the last row: one input shape, one compilation
    images = np.concatenate([images, np.repeat(images[-1:], batch_size - len(rows), axis=0)])
  return images, labels


def _fetch(output, num_real: int, batch_size: int) -> np.ndarray:
  features = np.asarray(output, np.float32)
  if features.ndim != 2 or features.shape[0] != batch_size:
    raise ValueError(f'encode_fn must return [batch, d] = [{batch_size}, d] features, got shape '
                     f'{features.shape}')
  return features[:num_real]


def extract_features(encode_fn: Callable[[np.ndarray], Any], source: Sequence[dict], *,
                     batch_size: int, cache_path: str | None = None, cache_key: str = '',
                     desc: str = 'features') -> tuple[np.ndarray, np.ndarray]:
  """Features and labels of every row of ``source``, in source order (docs/maths.md §4, "extracted once").

  Args:
    encode_fn: ``uint8 images [batch_size, H, W, 3] -> [batch_size, d]`` (NumPy or JAX); always
      called with exactly ``batch_size`` rows.
    source: random-access source, ``len(source)`` and ``source[i] -> {'image', 'label'}``.
    batch_size: rows per ``encode_fn`` call (>= 1).
    cache_path: ``.npz`` file to reuse / write; None for no cache.
    cache_key: what produced the features; a cache with another key is recomputed.
    desc: the name of the progress bar / lines (``glf_jax.runtime.progress``).

  Returns:
    ``(features float32 [n, d], labels int32 [n])``.

  Raises:
    ValueError: ``batch_size < 1``, an empty source, or ``encode_fn`` output of the wrong shape.
  """
  if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
    raise ValueError(f'batch_size must be an int >= 1, got {batch_size!r}')
  batch_size = int(batch_size)
  num_rows = len(source)
  if num_rows == 0:
    raise ValueError('cannot extract features of an empty source')
  if cache_path:
    cached = _load_cache(cache_path, cache_key, num_rows)
    if cached is not None:
      return cached

  features, labels = [], []
  in_flight = collections.deque()
  done = 0
  with progress.Progress(num_rows, desc=desc, unit='img') as bar:

    def fetch_oldest():
      nonlocal done
      features.append(_fetch(*in_flight.popleft(), batch_size))
      done += len(features[-1])
      bar.update(done)

    for start in range(0, num_rows, batch_size):
      images, batch_labels = _read_batch(source, start, min(start + batch_size, num_rows),
                                         batch_size)
      in_flight.append((encode_fn(images), len(batch_labels)))
      labels.append(batch_labels)
      if len(in_flight) >= _IN_FLIGHT_BATCHES:
        fetch_oldest()
    while in_flight:
      fetch_oldest()
  features = np.concatenate(features)
  labels = np.concatenate(labels)
  if cache_path:
    _save_cache(cache_path, cache_key, features, labels)
  return features, labels


def eval_mode_graphdef(graphdef: nnx.GraphDef, state: nnx.State) -> nnx.GraphDef:
  """The graph definition of the same module in eval mode (BatchNorm uses running averages).

  In flax 0.12 the mode is a static module attribute (``use_running_average``,
  ``deterministic``), part of the graph definition; ``Module.eval()`` sets it on every
  sub-module that has it. It is applied to a fresh ``nnx.merge`` copy, so the caller's module
  and ``state`` are untouched.
  """
  model = nnx.merge(graphdef, state)
  model.eval()
  eval_graphdef, _ = nnx.split(model)
  return eval_graphdef


def make_encode(graphdef: nnx.GraphDef, state: nnx.State, *, image_size: int,
                mean: Sequence[float], std: Sequence[float], crop_fraction: float = 1.0,
                feature: str = 'h') -> Callable[[nnx.State, jax.Array], jax.Array]:
  """The pure ``encode(model_state, uint8 images [b, H, W, 3]) -> float32 features [b, d]`` of
  :func:`make_encode_fn` (not jitted; ``state`` may be abstract: only its graph is read)."""
  eval_graphdef = eval_mode_graphdef(graphdef, state)
  mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

  def encode(model_state, images):
    x = augment.eval_transform(images, size=image_size, mean=mean, std=std,
                               crop_fraction=crop_fraction)
    out = nnx.merge(eval_graphdef, model_state)(x)
    if isinstance(out, dict):
      if feature not in out:
        raise KeyError(f'feature {feature!r} is not an output of the module: {sorted(out)}')
      out = out[feature]
    return jnp.asarray(out).astype(jnp.float32)

  return encode


def make_encode_fn(graphdef: nnx.GraphDef, state: nnx.State, *, image_size: int,
                   mean: Sequence[float], std: Sequence[float], crop_fraction: float = 1.0,
                   feature: str = 'h') -> Callable[[np.ndarray], jax.Array]:
  """The jitted ``uint8 images [b, H, W, 3] -> float32 features [b, d]`` of a frozen network.

  Applies ``augment.eval_transform`` (centre crop ``crop_fraction``, resize to ``image_size``,
  normalise with ``mean``/``std``), then the module in eval mode (BatchNorm running statistics:
  the features of an image do not depend on the rest of its batch).

  Args:
    graphdef, state: ``nnx.split(module)`` of an :class:`glf_jax.models.Encoder` (its
      ``__call__`` returns a dict; ``feature`` picks the entry) or of a backbone returning an
      array. Not modified.
    image_size, mean, std, crop_fraction: the evaluation transform.
    feature: the key of the output dict to return (``'h'``: backbone features).

  Returns:
    ``encode_fn(images) -> jax.Array``, jitted once per input shape.
  """
  encode = jax.jit(make_encode(graphdef, state, image_size=image_size, mean=mean, std=std,
                               crop_fraction=crop_fraction, feature=feature))
  return lambda images: encode(state, images)
