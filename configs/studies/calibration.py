"""The calibration that sized the CIFAR-10 studies' ``:midi`` tier: accuracy against cost.

    python -m glf_jax.main --config configs/studies/calibration.py --workdir runs/calibration \\
        --config.data.name=image_folder --config.data.root=ROOT \\
        --config.study.cells_dir=studies/results/calibration/cells

SimCLR (``configs/studies/cifar10.py``'s run) on CIFAR-10 at 16 px, seed 0 per cell: the
quickstart's network (``resnet_tiny`` x2, 32-d features) and ``resnet_small`` (128-d) at several
lengths. What a tier needs: the pretrained encoder at least 15 points of linear top-1 above both
its random initialisation and the raw pixels, one run within about 15 minutes on the 2-core
development CPU, a seed spread small enough for the studies' comparisons. ``results.md`` gives
accuracy and each run's training time (``train_seconds``); the chosen tier's seed spread is its
``baseline`` cell in ``configs/studies/adc_ablation.py:midi`` (the same run, three seeds).
"""

from glf_jax.config import load_config_module
from glf_jax.study.spec import as_study, cell, figure

NETWORKS = {'tiny2': {'model.arch': 'resnet_tiny', 'model.width_multiplier': 2},
            'small1': {'model.arch': 'resnet_small', 'model.width_multiplier': 1}}
EPOCHS = (3, 8)


def get_config():
  config = load_config_module('configs/studies/cifar10.py').cifar10_run('simclr')
  cells = [cell(f'{name}_e{epochs}', {**overrides, 'train.epochs': epochs})
           for name, overrides in NETWORKS.items() for epochs in EPOCHS]
  return as_study(config, 'calibration', cells=cells, seeds=(0,),
                  metrics=('linear/top1', 'knn/k20'),
                  figures=(figure('bar', 'linear/top1', file='calibration_linear_top1.png'),))
