"""simclr on cifar100 (ResNet-18, batch 512, 1000 epochs, LARS); `:adc` adds ADC (ν = υ = 0.1).

    python -m glf_jax.main --config configs/cifar100_simclr.py --workdir runs/cifar100_simclr
    python -m glf_jax.main --config configs/cifar100_simclr.py:adc --workdir runs/cifar100_simclr_adc

Needs the TFDS dataset prepared as ArrayRecord (the error message gives the command), or use
`--config.data.name=image_folder --config.data.root=DIR`. DCM-only / LPM-only ablations:
`--config.objective.adc.upsilon=0` / `--config.objective.adc.nu=0`.
"""

from glf_jax.train.config import paper_config, parse_config_arg


def get_config(arg=None):
  words = parse_config_arg(arg)
  arch = 'resnet50' if 'resnet50' in words else 'resnet18'
  return paper_config('simclr', 'cifar100', arch, adc='adc' in words)
