"""``checkpoint``: the encoder of an earlier glf_jax run (``prior.path`` = its workdir); its
architecture comes from that run's saved config."""

from flax import nnx

from glf_jax.evaluate import encoder as encoder_lib
from glf_jax.prior.base import Prior, encoder_prior


def _build(config, source):
  del source
  _, eval_graphdef, params, batch_stats, _ = encoder_lib.load_encoder(config.prior.path)
  return encoder_prior(nnx.merge(eval_graphdef, params, batch_stats), config.prior.feature)


PRIOR = Prior('checkpoint', _build, needs_path=True)
