"""Transfer a pretrained encoder to another dataset: full fine-tuning, or a linear classifier.

    python -m glf_jax.main --config configs/transfer.py \
        --config.eval.checkpoint_dir=runs/cifar10_simclr --workdir runs/transfer_c100
    # another target: --config.eval.data.name=stl10, or an image folder:
    #   --config.eval.data.name=image_folder --config.eval.data.root=/data/flowers
    # frozen backbone (linear classifier trained through the augmentations):
    #   --config.eval.finetune.freeze_backbone=True

``--config.mode=eval`` with the same ``eval.data`` gives the linear probe / kNN on frozen features.
"""

from glf_jax.config import base_config


def get_config():
  config = base_config('simclr', 'cifar10')
  config.mode = 'finetune'
  config.eval.data.name = 'cifar100'
  return config
