"""Embedded default: SimCLR+ADC on scikit-learn's digits with a small ResNet; no download.

    python -m glf_jax.main --config configs/quickstart.py --workdir /tmp/glf_quickstart

Pretrains, then prints linear probe, kNN, class geometry and alignment/uniformity of the
pretrained encoder next to the raw pixels and the same network at its random initialisation
(``eval.compare_raw_pixels``, ``eval.compare_random_init``). Override any field,
e.g. ``--config.objective.name=balanced+adc`` or ``--config.train.num_steps=100``; unknown keys are
refused. A second run with the same workdir resumes (or, when finished, says so and does nothing:
``--config.mode=eval`` evaluates it again).

``digits_run(objective)`` is this run's data, network, optimiser and views for any objective:
the digits studies (``configs/studies/digits.py``) start from it.
"""

from glf_jax.config import base_config


def digits_run(objective='simclr+adc'):
  """``objective`` on digits with the quickstart's network, optimiser and views; 40 epochs."""
  config = base_config(objective, 'digits', 'resnet_tiny')
  config.model.width_multiplier = 2
  config.model.projector_hidden_dim = 128
  config.model.projection_dim = 64
  if 'simclr' in config.objective:
    config.objective.simclr.temperature = 0.2
  config.optim.name = 'adamw'
  config.optim.base_learning_rate = 2e-3
  config.optim.lr_scaling = 'none'
  config.optim.weight_decay = 1e-4
  config.optim.warmup_epochs = 1.0
  config.train.batch_size = 256
  config.train.epochs = 40
  config.train.log_every = 25
  config.checkpoint.every_steps = 100
  # Digits are 8x8 upscaled to 16x16: keep most of each crop so the digit stays legible.
  for view in (config.augment.view1, config.augment.view2):
    view.crop_scale = (0.5, 1.0)
    view.flip_prob = 0.0          # flipped digits are other symbols
    view.hue = 0.0
  return config


def get_config():
  config = digits_run('simclr+adc')
  config.eval.linear.epochs = 200
  config.eval.alignment.examples = 256
  config.eval.compare_random_init = True
  return config
