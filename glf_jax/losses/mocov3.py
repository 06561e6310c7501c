"""MoCo v3 symmetrised InfoNCE against momentum keys (Chen, Xie & He 2021, Algorithm 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glf_jax.losses import checks
from glf_jax.losses.similarity import l2_normalize

__all__ = ['mocov3']


def _contrast(q, k, temperature):
  """One direction ``ctr(q, k)``, with its aligning and constraining parts and statistics.

  ``2τ · mean_i [-s_ii/τ + log Σ_j exp(s_ij/τ)]`` with ``s_ij = cos(q_i, sg(k_j))``.
  """
  s = l2_normalize(q) @ jax.lax.stop_gradient(l2_normalize(k)).T
  logits = s / temperature
  pos = jnp.diagonal(s)
  lse = jax.nn.logsumexp(logits, axis=-1)
  scale = 2.0 * temperature
  # The loss itself from the per-row difference (no cancellation between the two large parts).
  loss = scale * jnp.mean(lse - pos / temperature)
  align = scale * jnp.mean(-pos / temperature)
  num = s.shape[0]
  off_diag = ~jnp.eye(num, dtype=bool)
  neg = jnp.sum(jnp.where(off_diag, s, 0.0)) / max(num * (num - 1), 1)
  return loss, align, scale * jnp.mean(lse), jnp.mean(pos), neg


def mocov3(q1, q2, k1, k2, *, temperature=0.2):
  """``ctr(q1, k2) + ctr(q2, k1)``, ``ctr(q, k) = 2τ · mean_i CE(softmax_j(q̂_i·k̂_jᵀ/τ), j = i)``.

  Args:
    q1, q2: online queries (predictor outputs) of view 1 and view 2, ``[N, D]``.
    k1, k2: momentum-encoder keys of view 1 and view 2, ``[N, D]``; gradients are stopped.
    temperature: ``τ > 0`` (paper: 0.2).

  Rows are ℓ2-normalised; each query's positive is the key of the same image in the other view and
  its negatives are the keys of every other image of the (global) batch: under ``jax.jit`` on a
  batch sharded over devices, ``q @ kᵀ`` spans the global batch with no explicit all-gather. This
  is solo-learn's ``mocov3_loss_func`` summed over both directions, with the pseudo-code's ``2τ``
  factor. ``aux`` splits the loss into ``align`` (the positives' ``-2τ·s_ii/τ`` terms) and
  ``constrain`` (the log-sum-exp terms), ``align + constrain == loss`` up to rounding.
  """
  checks.check_views(q1, q2, names=('q1', 'q2'))
  checks.check_views(k1, k2, names=('k1', 'k2'))
  if q1.shape != k1.shape:
    raise ValueError(f'queries and keys must have the same shape, got {q1.shape} and {k1.shape}')
  checks.check_positive('temperature', temperature)
  dtype = checks.compute_dtype(q1, q2, k1, k2)
  q1, q2, k1, k2 = (x.astype(dtype) for x in (q1, q2, k1, k2))
  l12, a12, c12, pos12, neg12 = _contrast(q1, k2, temperature)
  l21, a21, c21, pos21, neg21 = _contrast(q2, k1, temperature)
  loss = l12 + l21
  align, constrain = a12 + a21, c12 + c21
  return loss, {'mocov3': loss, 'align': align, 'constrain': constrain,
                'pos_sim': 0.5 * (pos12 + pos21), 'neg_sim': 0.5 * (neg12 + neg21)}
