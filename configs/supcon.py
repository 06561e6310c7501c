"""SupCon (Khosla et al. 2020) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/supcon.py --workdir runs/c10_supcon
    python -m glf_jax.main --config configs/supcon.py:cifar100,adc --workdir runs/c100_supcon_adc
    python -m glf_jax.main --config configs/supcon.py:imagenet100,resnet50 --workdir runs/in100_supcon
    python -m glf_jax.main --config configs/supcon.py:tiny --workdir /tmp/supcon_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/supcon.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).

SimCLR's recipe (``configs/simclr.py``).
"""

from glf_jax.config import finish_method_config, load_config_module, method_config


def get_config(arg=None):
  config, words = method_config('supcon', arg)
  load_config_module('configs/simclr.py').simclr_recipe(config, words['imagenet'])
  return finish_method_config(config, words)
