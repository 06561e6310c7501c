"""barlow_twins on ImageNet-100, 400 epochs, batch 256; args `adc`, `resnet50` (default ResNet-18).

    python -m glf_jax.main --config configs/imagenet100_barlow_twins.py:adc,resnet50 --workdir runs/in100_barlow_twins
"""

from glf_jax.train.config import paper_config_from_arg


def get_config(arg=None):
  return paper_config_from_arg('barlow_twins', 'imagenet100', arg, epochs=400, batch_size=256)
