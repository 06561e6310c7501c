"""Evaluation of frozen encoders (SPEC §4): one contract for every evaluator.

* ``common``: the contract ``evaluator(context, settings) -> {metric: value}``, the shared
  :class:`~glf_jax.evaluate.common.Context` (one encoder, the evaluation data, features computed
  once and cached), the registry and ``config.eval``.
* Evaluators, one module each: ``linear_probe`` (``linear``), ``knn``, ``geometry``,
  ``alignment``, ``finetune`` (fine-tuning / transfer), ``prototype_bias``.
* ``features``: feature extraction and its cache; ``report.format_table``: results side by side.

Encoders are loaded from a checkpoint by ``glf_jax.checkpoint.load_encoder`` from their saved
model config alone; nothing here depends on the training code.
"""

from glf_jax.evaluate import alignment, common, finetune, geometry, knn, linear_probe
from glf_jax.evaluate import prototype_bias
from glf_jax.evaluate.common import EVALUATORS, Context, evaluate, register
from glf_jax.evaluate.features import extract_features, make_encode_fn
from glf_jax.evaluate.knn import knn_accuracy
from glf_jax.evaluate.report import format_table

__all__ = [
    'Context',
    'EVALUATORS',
    'evaluate',
    'extract_features',
    'format_table',
    'knn_accuracy',
    'make_encode_fn',
    'register',
]
