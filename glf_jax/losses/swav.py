"""SwAV swapped prediction with Sinkhorn-Knopp codes (Caron et al. 2020, eqs. 1-3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glf_jax.losses import checks
from glf_jax.losses.similarity import l2_normalize

__all__ = ['sinkhorn_knopp', 'swav']


def sinkhorn_knopp(scores, *, epsilon=0.05, num_iters=3):
  """Equipartitioned soft codes ``q [B, K]`` for ``scores [B, K]``, in log space.

  Starts from ``exp(scores / ε)`` and alternately normalises prototypes (columns, mass ``1/K``
  each) and samples (rows, mass ``1/B`` each), ``num_iters`` times; rows of the result sum to 1.
  Run on the global batch: under ``jax.jit`` on a sharded batch the column sums span all devices.
  """
  checks.check_positive('epsilon', epsilon)
  if not isinstance(num_iters, int) or num_iters < 1:
    raise ValueError(f'sinkhorn_iters must be an int >= 1, got {num_iters!r}')
  batch, num_prototypes = scores.shape
  log_q = scores / epsilon
  log_q = log_q - jax.nn.logsumexp(log_q)
  for _ in range(num_iters):
    log_q = log_q - jax.nn.logsumexp(log_q, axis=0, keepdims=True) - jnp.log(num_prototypes)
    log_q = log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - jnp.log(batch)
  return jnp.exp(log_q + jnp.log(batch))


def swav(z1, z2, prototypes, *, temperature=0.1, epsilon=0.05, sinkhorn_iters=3):
  """``½ mean_n [-Σ_k q2 log softmax(p1/τ) - Σ_k q1 log softmax(p2/τ)]``.

  ``z`` is ℓ2-normalised here; ``prototypes [K, D]`` are used as given (the training step keeps
  them normalised). Codes ``q = SinkhornKnopp(sg(z Cᵀ))`` carry no gradient.
  """
  checks.check_views(z1, z2)
  checks.check_positive('temperature', temperature)
  if jnp.ndim(prototypes) != 2 or prototypes.shape[1] != z1.shape[1]:
    raise ValueError(f'prototypes must have shape [K, {z1.shape[1]}], got {jnp.shape(prototypes)}')
  dtype = checks.compute_dtype(z1, z2, prototypes)
  c = prototypes.astype(dtype)
  scores1 = l2_normalize(z1.astype(dtype)) @ c.T
  scores2 = l2_normalize(z2.astype(dtype)) @ c.T
  q1 = jax.lax.stop_gradient(sinkhorn_knopp(scores1, epsilon=epsilon, num_iters=sinkhorn_iters))
  q2 = jax.lax.stop_gradient(sinkhorn_knopp(scores2, epsilon=epsilon, num_iters=sinkhorn_iters))
  ce12 = -jnp.sum(q2 * jax.nn.log_softmax(scores1 / temperature, axis=-1), axis=-1)
  ce21 = -jnp.sum(q1 * jax.nn.log_softmax(scores2 / temperature, axis=-1), axis=-1)
  loss = 0.5 * (jnp.mean(ce12) + jnp.mean(ce21))
  entropy = -jnp.mean(jnp.sum(q1 * jnp.log(jnp.maximum(q1, 1e-30)), axis=-1))
  return loss, {'swav': loss, 'code_entropy': entropy}
