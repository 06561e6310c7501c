"""Evaluation of encoders (SPEC §4): features + cache, linear probe, kNN, geometry, fine-tuning.

* ``features.extract_features``: frozen features of a source in order, cached as ``.npz``;
  ``features.make_encode_fn``: the jitted eval-mode ``uint8 images -> features`` of a network.
* ``linear_probe.linear_probe``: optax linear classifier on frozen features (top-1 / top-5).
* ``knn.knn_accuracy``: temperature-weighted cosine kNN (Wu et al., 2018).
* ``report.representation_report``: probe + kNN (k = 20, 200) + class geometry as one flat dict;
  ``report.format_table``: results side by side.
* ``finetune.finetune``: full fine-tuning, or a linear classifier on the frozen backbone trained
  through the augmentations, on another dataset (transfer).

The functions named like their module (``linear_probe.linear_probe``, ``finetune.finetune``) are
reached through the module (``from glf_jax.evaluate import finetune``); the others are also
re-exported here.
"""

from glf_jax.evaluate.features import extract_features
from glf_jax.evaluate.features import make_encode_fn
from glf_jax.evaluate.finetune import default_finetune_config
from glf_jax.evaluate.knn import knn_accuracy
from glf_jax.evaluate.report import default_probe_config
from glf_jax.evaluate.report import format_table
from glf_jax.evaluate.report import representation_report

__all__ = [
    'default_finetune_config',
    'default_probe_config',
    'extract_features',
    'format_table',
    'knn_accuracy',
    'make_encode_fn',
    'representation_report',
]
