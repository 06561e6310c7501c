"""The ``prototype_bias`` evaluator: prototype representation bias (arXiv 2510.10572 §5, SPEC §4).

``K`` augmented views of each of ``N`` test images — one of the run's own view recipes, the
training distribution of views — are encoded by the frozen encoder (eval mode, ``h``); the
surrogate prototype of an image is the mean of its ``K`` features, the true prototype of a class
the mean of its images' surrogates, and the bias the mean distance between the two
(``glf_jax.metrics.prototype_bias``). Reported on raw features (the paper's values, e.g. 36.72 for
the base SimCLR recipe, are not on the unit sphere) and on l2-normalised ones, with ``K`` and
``N``. Not in the default ``eval.evaluators``: it costs ``K`` forward passes per image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
import numpy as np

from glf_jax import metrics
from glf_jax.data import augment
from glf_jax.evaluate import common

VIEWS = ('view1', 'view2')


def default_prototype_bias_settings() -> ml_collections.ConfigDict:
  """``config.eval.prototype_bias``: ``augmentations`` K per image, ``examples`` N test images
  (evenly spaced over the split, so every class is represented), ``view``: which of the run's
  recipes (``view1`` or ``view2``) draws the augmentations."""
  return ml_collections.ConfigDict(dict(augmentations=8, examples=512, view='view1'))


def _check_settings(settings) -> tuple[int, int, str]:
  """``(K, N, view)`` of ``settings`` over the defaults, checked."""
  given = settings.to_dict() if hasattr(settings, 'to_dict') else dict(settings)
  full = {**default_prototype_bias_settings().to_dict(), **given}
  k, n, view = full['augmentations'], full['examples'], full['view']
  for name, value in (('augmentations', k), ('examples', n)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f'eval.prototype_bias.{name} must be an int >= 1, got {value!r}')
  if view not in VIEWS:
    raise ValueError(f'eval.prototype_bias.view must be one of {list(VIEWS)}, got {view!r}')
  return k, n, view


def augmented_features(context: common.Context, images: np.ndarray, recipe, *,
                       num_augmentations: int, key: jax.Array) -> np.ndarray:
  """``h`` of ``num_augmentations`` views of each image: float32 ``[n, K, d]``.

  Images go through the encoder ``max(1, batch_size // K)`` at a time (the last chunk padded, so
  one compilation serves all); chunk ``c`` draws its views with ``fold_in(key, c)``.
  """
  augment.validate_view_config(recipe)
  k = num_augmentations
  chunk = max(1, int(context.batch_size) // k)
  eval_graphdef = context.eval_graphdef

  @jax.jit
  def encode(params, batch_stats, images, chunk_key):
    views = augment.augment_batch(chunk_key, jnp.repeat(images, k, axis=0), recipe)
    model = nnx.merge(eval_graphdef, params, batch_stats)
    h = model(views)['h'].astype(jnp.float32)
    return h.reshape(images.shape[0], k, h.shape[-1])

  out = []
  for c, start in enumerate(range(0, len(images), chunk)):
    part = images[start:start + chunk]
    filled = len(part)
    if filled < chunk:
      part = np.concatenate([part, np.repeat(part[-1:], chunk - filled, axis=0)])
    h = encode(context.params, context.batch_stats, part, jax.random.fold_in(key, c))
    out.append(np.asarray(h)[:filled])
  return np.concatenate(out)


def prototype_bias_evaluator(context: common.Context, settings) -> dict:
  """``prototype_bias/raw``, ``prototype_bias/normalized`` (and ``.../num_augmentations``,
  ``.../num_images``) of ``h`` over the test split."""
  k, n, view = _check_settings(settings)
  source = context.test_source
  n = min(n, len(source))
  if n < 2:
    return {}
  rows = np.unique(np.linspace(0, len(source) - 1, n).astype(np.int64))
  examples = [source[int(i)] for i in rows]
  images = np.stack([e['image'] for e in examples])
  labels = np.array([int(e['label']) for e in examples])
  feats = augmented_features(context, images, context.augment[view], num_augmentations=k,
                             key=jax.random.key(context.seed + 11))
  raw = metrics.prototype_bias(feats, labels, normalize=False)
  normalized = metrics.prototype_bias(feats, labels, normalize=True)
  return {'prototype_bias/raw': raw['bias'], 'prototype_bias/normalized': normalized['bias'],
          'prototype_bias/num_augmentations': k, 'prototype_bias/num_images': len(rows)}


EVALUATOR = common.Evaluator('prototype_bias', prototype_bias_evaluator, default_prototype_bias_settings)
