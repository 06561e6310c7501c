"""Backbones, heads and the encoder that assembles them from ``config.model``."""

from glf_jax.models.encoder import (DTYPES, HEADS, Encoder, build_encoder, count_params,
                                    default_model_config)
from glf_jax.models.heads import (MLPHead, SwAVHead, barlow_twins_projector, byol_predictor,
                                  byol_projector, simclr_projector)
from glf_jax.models.resnet import (RESNETS, STEMS, BasicBlock, BottleneckBlock, ResNet, resnet18,
                                   resnet34, resnet50, resnet_tiny)
