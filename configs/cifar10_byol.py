"""byol on cifar10 (ResNet-18, batch 512, 1000 epochs, LARS); `:adc` adds ADC (ν = υ = 0.1).

    python -m glf_jax.main --config configs/cifar10_byol.py --workdir runs/cifar10_byol
    python -m glf_jax.main --config configs/cifar10_byol.py:adc --workdir runs/cifar10_byol_adc

Needs the TFDS dataset prepared as ArrayRecord (the error message gives the command), or use
`--config.data.name=image_folder --config.data.root=DIR`. DCM-only / LPM-only ablations:
`--config.objective.adc.upsilon=0` / `--config.objective.adc.nu=0`.
"""

from glf_jax.train.config import paper_config, parse_config_arg


def get_config(arg=None):
  words = parse_config_arg(arg)
  arch = 'resnet50' if 'resnet50' in words else 'resnet18'
  return paper_config('byol', 'cifar10', arch, adc='adc' in words)
