"""``pixels``: the input space itself, the paper's "identity" prior — each view, resized to
``prior.pixel_size`` when set, flattened."""

import jax
import jax.numpy as jnp

from glf_jax.prior.base import Prior


def _build(config, source):
  del source
  size = config.prior.pixel_size
  if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
    raise ValueError(f'prior.pixel_size must be an int >= 1 or None (keep the size), got '
                     f'{size!r}')

  def pixels(prior_state, views, batch=None):
    del prior_state, batch
    x = views.astype(jnp.float32)
    if size and size != x.shape[1]:
      x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear')
    return x.reshape(x.shape[0], -1)
  return pixels, {}


PRIOR = Prior('pixels', _build)
