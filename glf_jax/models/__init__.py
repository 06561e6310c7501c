"""Backbones, heads and the encoder that assembles them from ``config.model``."""

from glf_jax.models.encoder import (DTYPES, Encoder, build_encoder, default_model_config,
                                    split_encoder)
from glf_jax.models.heads import (LinearHead, MLPHead, classification_loss, linear_init,
                                  linear_logits, mlp_head)
from glf_jax.models.params import count_params, decay_mask
from glf_jax.models.resnet import (RESNETS, STEMS, BasicBlock, BottleneckBlock, ResNet, resnet18,
                                   resnet34, resnet50, resnet_tiny)
