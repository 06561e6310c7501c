"""NSCL (negatives-only supervised contrastive, arXiv 2506.04411) on CIFAR-10, ResNet-18.

    python -m glf_jax.main --config configs/cifar10_nscl.py --workdir runs/cifar10_nscl

With the same ``--config.seed`` as a SimCLR run (configs/cifar10_simclr.py with
``--config.objective.simclr.temperature=0.5``) both runs share initial parameters, batches and
augmentation keys: the shared-randomness set-up of arXiv 2510.08852.
"""

from glf_jax.train.config import paper_config_from_arg


def get_config(arg=None):
  return paper_config_from_arg('nscl', 'cifar10', arg)
