"""``features``: precomputed per-example features (``prior.path``, a
``glf_jax.prior.features_file`` file, e.g. CLIP's), checked against the training source and
gathered on the device by the batch's example ``index``. Our reading of the ADC paper for a
per-image file: the prior describes the image, not its augmentation, so both views of example
``i`` get its clean-image row ``i``."""

import jax.numpy as jnp

from glf_jax.prior import features_file
from glf_jax.prior.base import Prior


def _build(config, source):
  if source is None:
    raise ValueError('prior.kind=features needs the training source to check the file against')
  table = features_file.load_for_source(config.prior.path, source)

  def lookup(prior_state, views, batch=None):
    del views
    if batch is None or 'index' not in batch:
      raise ValueError("prior.kind=features needs the batch's example 'index'")
    rows = prior_state['features'][batch['index']].astype(jnp.float32)
    return jnp.concatenate([rows, rows])  # both views: the clean image's features
  return lookup, {'features': jnp.asarray(table)}


PRIOR = Prior('features', _build, needs_path=True)
