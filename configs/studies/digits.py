"""One run of the digits studies: ``configs/quickstart.py``'s run for 20 epochs, studies' eval.

    python -m glf_jax.main --config configs/studies/digits.py:balanced --workdir runs/digits_bal

The ``:mini`` sizes of ``adc_ablation``, ``balanced_grid``, ``prototype_bias`` and
``cl_vs_nscl`` start from this (the argument: the objective, default ``simclr+adc``):
scikit-learn's digits (1,347 train / 450 test images, 8x8 upscaled to 16 px), the quickstart's
small ResNet (width x2), AdamW at 2e-3, batch 256, 20 epochs (100 steps), then a linear probe
(100 epochs) and kNN (k = 20) on the pretrained encoder only. ``:smoke`` words after a comma
shrink it for the tests (``configs/studies/digits.py:simclr,smoke``): a tiny network, 3 steps
of 64 on one device, a linear probe of 2 epochs on 128 / 64 images.
"""

from glf_jax.config import load_config_module, smoke_run


def get_config(arg=None):
  words = [w.strip() for w in (arg or '').split(',') if w.strip()]
  objective = next((w for w in words if w != 'smoke'), 'simclr+adc')
  smoke = 'smoke' in words
  if len(words) > 1 + smoke:
    raise ValueError(f'configs/studies/digits.py takes an objective and optionally "smoke", got '
                     f'{arg!r}')
  config = load_config_module('configs/quickstart.py').digits_run(objective)
  config.train.epochs = 20
  config.eval.evaluators = ('linear', 'knn')
  config.eval.linear.epochs = 100
  config.eval.knn.k = (20,)
  # Every cell beside its random initialisation and the raw pixels (a few seconds on digits):
  # the tables then say whether pretraining beat pixels at all.
  config.eval.compare_random_init = True
  config.eval.compare_raw_pixels = True
  if smoke:
    config.eval.compare_random_init = False
    config.eval.compare_raw_pixels = False
    smoke_run(config)
    config.checkpoint.every_steps = 1000
  return config
