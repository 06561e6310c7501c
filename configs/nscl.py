"""NSCL (arXiv 2506.04411, 2510.08852) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/nscl.py --workdir runs/c10_nscl
    python -m glf_jax.main --config configs/nscl.py:cifar100,adc --workdir runs/c100_nscl_adc
    python -m glf_jax.main --config configs/nscl.py:imagenet100,resnet50 --workdir runs/in100_nscl
    python -m glf_jax.main --config configs/nscl.py:tiny --workdir /tmp/nscl_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/nscl.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).

With the same ``--config.seed`` as a SimCLR run (``configs/simclr.py`` with
``--config.objective.simclr.temperature=0.5``) both start from one parameter copy and see the same
batches and views: the shared-randomness set-up of arXiv 2510.08852. SimCLR's recipe.
"""

from glf_jax.config import finish_method_config, load_config_module, method_config


def get_config(arg=None):
  config, words = method_config('nscl', arg)
  load_config_module('configs/simclr.py').simclr_recipe(config, words['imagenet'])
  if words['imagenet']:
    config.objective.nscl.temperature = 0.1
  return finish_method_config(config, words)
