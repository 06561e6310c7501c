"""``weights``: parameters for ``config.model``'s architecture from a ``.npz`` or
``.safetensors`` file (``prior.path``; ``glf_jax.models.weights``)."""

from flax import nnx

from glf_jax.models import build_encoder
from glf_jax.models.weights import load_weights_into
from glf_jax.prior.base import Prior, encoder_prior


def _build(config, source):
  del source
  encoder = build_encoder(config.model, rngs=nnx.Rngs(0))
  load_weights_into(encoder, config.prior.path)
  return encoder_prior(encoder, config.prior.feature)


PRIOR = Prior('weights', _build, needs_path=True)
