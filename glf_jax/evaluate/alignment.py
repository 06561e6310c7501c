"""The ``alignment`` evaluator: alignment and uniformity (Wang & Isola 2020, docs/maths.md §4) of ``h``
over two augmented views — the run's own view recipes — of the first test images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
import numpy as np

from glf_jax import metrics
from glf_jax.data import augment
from glf_jax.evaluate import common


def default_alignment_settings() -> ml_collections.ConfigDict:
  """``config.eval.alignment``: how many test images give the two views."""
  return ml_collections.ConfigDict(dict(examples=512))


def alignment_evaluator(context: common.Context, settings) -> dict:
  """``alignment/alignment`` and ``alignment/uniformity`` of ``h`` in eval mode."""
  n = min(int(settings.examples), len(context.test_source))
  if n < 2:
    return {}
  images = np.stack([context.test_source[i]['image'] for i in range(n)])
  key = jax.random.key(context.seed + 7)
  eval_graphdef = context.eval_graphdef

  @jax.jit
  def two_view_features(params, batch_stats, images):
    v1, v2 = augment.two_views(key, images, context.augment)
    model = nnx.merge(eval_graphdef, params, batch_stats)
    return model(v1)['h'].astype(jnp.float32), model(v2)['h'].astype(jnp.float32)

  h1, h2 = two_view_features(context.params, context.batch_stats, images)
  return {f'alignment/{k}': v for k, v in
          metrics.alignment_uniformity(np.asarray(h1), np.asarray(h2)).items()}


EVALUATOR = common.Evaluator('alignment', alignment_evaluator, default_alignment_settings)
