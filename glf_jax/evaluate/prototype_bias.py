"""The ``prototype_bias`` evaluator: prototype representation bias (arXiv 2510.10572 §5, docs/maths.md §4).

``K`` augmented views of each of ``N`` test images — one of the run's own view recipes, the
training distribution of views — are encoded by the frozen encoder (eval mode, ``h``); the
surrogate prototype of an image is the mean of its ``K`` features, the true prototype of a class
the mean of its images' surrogates, and the bias the mean distance between the two
(``glf_jax.metrics.prototype_bias``). Reported on raw features (the paper's values, e.g. 36.72 for
the base SimCLR recipe, are not on the unit sphere) and on l2-normalised ones, with ``K`` and
``N``. Not in the default ``eval.evaluators``: it costs ``K`` forward passes per image.

``.../raw_clean`` and ``.../normalized_clean`` read the paper's true prototype over the data
instead of its views: the class mean of the images' own features (the evaluation transform, the
features the linear probe and kNN use), against the same surrogates. Views that move every
image's features by one vector leave the first reading unchanged and move this one by up to that
vector's length (raising it once the shift outgrows the class's spread; docs/maths.md §4.5).

``.../surrogate_norm``: the mean length of the surrogates of the l2-normalised features (1 when an
image's ``K`` views embed to one direction, less the more they disagree). Views that disagree
more shorten every surrogate and with it every distance the bias measures; a bias that falls by
the same fraction as this is that shrinkage.

``variants`` (a JSON object ``{name: {view field: value}}``) also measures the bias of this same
encoder under other view recipes (the run's recipe with those fields changed) as
``prototype_bias/<name>/raw`` and ``.../normalized``: with one encoder and each recipe's views,
what the views alone do to the bias (the fixed-encoder control of the prototype-bias study).
"""

from __future__ import annotations

import copy
import json

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
  recipes (``view1`` or ``view2``) draws the augmentations; ``variants``: other recipes to
  measure this encoder under (module docstring; '' for none)."""
  return ml_collections.ConfigDict(dict(augmentations=8, examples=512, view='view1',
                                        variants=''))


def _check_settings(settings) -> tuple[int, int, str, dict]:
  """``(K, N, view, variants)`` of ``settings`` over the defaults, checked."""
  given = settings.to_dict() if hasattr(settings, 'to_dict') else dict(settings)
  full = {**default_prototype_bias_settings().to_dict(), **given}
  k, n, view = full['augmentations'], full['examples'], full['view']
  for name, value in (('augmentations', k), ('examples', n)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f'eval.prototype_bias.{name} must be an int >= 1, got {value!r}')
  if view not in VIEWS:
    raise ValueError(f'eval.prototype_bias.view must be one of {list(VIEWS)}, got {view!r}')
  try:
    variants = json.loads(full['variants']) if full['variants'] else {}
  except ValueError as e:
    raise ValueError(f'eval.prototype_bias.variants must be a JSON object {{name: {{view field: '
                     f'value}}}}, got {full["variants"]!r} ({e})') from None
  if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
    raise ValueError('eval.prototype_bias.variants must be a JSON object {name: {view field: '
                     f'value}}}}, got {full["variants"]!r}')
  return k, n, view, variants


def _variant(recipe, name: str, overrides: dict):
  """The recipe with ``overrides``' fields set (every field must exist)."""
  out = copy.deepcopy(recipe)
  for field, value in overrides.items():
    if field not in out:
      raise ValueError(f'eval.prototype_bias.variants[{name!r}]: the view has no field {field!r}')
    out[field] = tuple(value) if isinstance(value, list) else value
  return out


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
  """``prototype_bias/raw``, ``.../normalized``, ``.../raw_clean``, ``.../normalized_clean``,
  ``.../surrogate_norm`` (and ``.../num_augmentations``, ``.../num_images``) of ``h`` over the
  test split."""
  k, n, view, variants = _check_settings(settings)
  source = context.test_source
  n = min(n, len(source))
  if n < 2:
    return {}
  rows = np.unique(np.linspace(0, len(source) - 1, n).astype(np.int64))
  examples = [source[int(i)] for i in rows]
  images = np.stack([e['image'] for e in examples])
  labels = np.array([int(e['label']) for e in examples])
  recipe = context.augment[view]
  clean = context.features('test')[0][rows]  # (the probe's features: computed once per run)
  out = {'prototype_bias/num_augmentations': k, 'prototype_bias/num_images': len(rows)}
  for prefix, views in [('prototype_bias', recipe)] + [
      (f'prototype_bias/{name}', _variant(recipe, name, overrides))
      for name, overrides in variants.items()]:
    # One key for every recipe: the same draws where the recipes share their transforms.
    feats = augmented_features(context, images, views, num_augmentations=k,
                               key=jax.random.key(context.seed + 11))
    for name, normalize in (('raw', False), ('normalized', True)):
      views_reading = metrics.prototype_bias(feats, labels, normalize=normalize)
      out[f'{prefix}/{name}'] = views_reading['bias']
      if normalize:
        out[f'{prefix}/surrogate_norm'] = views_reading['surrogate_norm']
      out[f'{prefix}/{name}_clean'] = metrics.prototype_bias(
          feats, labels, normalize=normalize, clean=clean)['bias']
  return out


EVALUATOR = common.Evaluator('prototype_bias', prototype_bias_evaluator, default_prototype_bias_settings)
