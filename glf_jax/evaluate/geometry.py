"""The ``geometry`` evaluator: intra-class compactness and inter-class separability of the test
features ``h`` (docs/maths.md §4, ``glf_jax.metrics.class_geometry``)."""

from __future__ import annotations

from glf_jax import metrics
from glf_jax.evaluate import common


def geometry_evaluator(context: common.Context, settings) -> dict:
  """``geometry/compactness``, ``geometry/separability_mean``, ``..._min``, ``geometry/ratio``."""
  del settings
  test_x, test_y = context.features('test')
  return {f'geometry/{name}': value
          for name, value in metrics.class_geometry(test_x, test_y).items()}


EVALUATOR = common.Evaluator('geometry', geometry_evaluator)
