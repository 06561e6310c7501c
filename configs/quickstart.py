"""Embedded default: SimCLR+ADC (pixel prior) on scikit-learn's digits, no download.

    python -m glf_jax.main --config configs/quickstart.py --workdir /tmp/glf_quickstart

Override any field from the command line, e.g. ``--config.objective.name=byol`` is rejected
(BYOL needs a predictor and target), while ``--config.objective.adc.nu=1.0`` or
``--config.steps=100`` work; unknown keys are refused.
"""

import ml_collections

from glf_jax.losses import objective_config


def get_config():
  config = ml_collections.ConfigDict()
  config.mode = 'loss_demo'
  config.seed = 0
  config.steps = 400
  config.batch_size = 256
  config.learning_rate = 2e-3
  config.weight_decay = 1e-4
  config.hidden_dim = 256
  config.feature_dim = 128
  config.projection_dim = 64
  config.noise_std = 0.1
  config.dropout = 0.1
  config.test_fraction = 0.3
  config.knn_k = 20
  config.log_every = 50
  config.objective = objective_config('simclr+adc')
  config.objective.simclr.temperature = 0.2
  return config
