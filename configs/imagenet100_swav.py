"""swav on ImageNet-100 (ResNet-18 by default, `:resnet50` for ResNet-50; `adc` adds ADC).

    python -m glf_jax.main --config configs/imagenet100_swav.py --workdir runs/in100_swav
    python -m glf_jax.main --config configs/imagenet100_swav.py:adc,resnet50 --workdir runs/in100_swav_r50_adc

Reads prepared `imagenet2012` TFDS files (the 100 CMC classes); 400 epochs, batch 256.
"""

from glf_jax.train.config import paper_config, parse_config_arg


def get_config(arg=None):
  words = parse_config_arg(arg)
  arch = 'resnet50' if 'resnet50' in words else 'resnet18'
  return paper_config('swav', 'imagenet100', arch, adc='adc' in words, epochs=400,
                      batch_size=256)
