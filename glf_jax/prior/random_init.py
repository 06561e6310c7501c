"""``random``: a frozen, randomly initialised encoder of ``config.model``'s architecture (seed
``prior.seed``): a control."""

from flax import nnx

from glf_jax.models import build_encoder
from glf_jax.prior.base import Prior, encoder_prior


def _build(config, source):
  del source
  encoder = build_encoder(config.model, rngs=nnx.Rngs(int(config.prior.seed)))
  return encoder_prior(encoder, config.prior.feature)


PRIOR = Prior('random', _build)
