"""byol on cifar10: ResNet-18, batch 512, 1000 epochs, LARS; `:adc` adds ADC (ν = υ = 0.1).

    python -m glf_jax.main --config configs/cifar10_byol.py:adc --workdir runs/cifar10_byol_adc
"""

from glf_jax.train.config import paper_config_from_arg


def get_config(arg=None):
  return paper_config_from_arg('byol', 'cifar10', arg)
