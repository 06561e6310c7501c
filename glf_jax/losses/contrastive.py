"""Contrastive losses over the ``M = 2N`` rows of two views (docs/maths.md §2).

* ``nt_xent`` — generalised NT-Xent of SimCLR (Chen et al. 2020, eq. 1).
* ``balanced_contrastive`` — the (alpha, lambda) balanced loss of arXiv 2510.10572.
* ``nscl`` — negatives-only supervised contrastive loss (arXiv 2506.04411, used by 2510.08852).
* ``supcon`` — supervised contrastive loss (Khosla et al. 2020, eq. 2, "L_out").
* ``cross_entropy`` — supervised softmax cross-entropy, the other supervised baseline.

Each returns ``(loss, aux)``; ``aux`` holds the aligning and constraining parts of the GLF
decomposition (``align + constrain == loss``) and similarity statistics. All are evaluated per
block of anchor rows (``block_size``, see ``blockwise.py``); ``None`` is the dense form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from glf_jax.losses import checks
from glf_jax.losses.blockwise import map_rows
from glf_jax.losses.similarity import (PairwiseSimilarity, masked_mean, row_masks,
                                       stack_views, take_masked)

__all__ = ['balanced_contrastive', 'cross_entropy', 'nscl', 'nt_xent', 'supcon']


def _contrastive(z1, z2, per_row, *, similarity, block_size, labels=None):
  """Shared driver: ``per_row(s, self_mask, pos_mask, same_label) -> dict of [b] arrays``.

  Adds positive / negative similarity means to the per-row outputs and averages everything.
  """
  checks.check_views(z1, z2)
  if labels is not None:
    checks.check_labels(labels, z1.shape[0])
    labels = jnp.concatenate([labels, labels])
  sim = PairwiseSimilarity(stack_views(z1, z2), similarity)

  def rows_fn(rows):
    s = sim.rows(rows)
    self_mask, pos_mask = row_masks(rows, sim.num_rows)
    same_label = None if labels is None else labels[rows, None] == labels[None, :]
    out = per_row(s, self_mask, pos_mask, same_label)
    out['pos_sim'] = take_masked(s, pos_mask)
    out['neg_sim'] = masked_mean(s, ~(self_mask | pos_mask))
    return out

  per_row_out = map_rows(rows_fn, sim.num_rows, block_size)
  aux = {k: jnp.mean(v) for k, v in per_row_out.items()}
  return aux['align'] + aux['constrain'], aux


def nt_xent(z1, z2, *, temperature=0.5, similarity='cosine', block_size=None):
  """Generalised NT-Xent: ``l_i = -s(z_i, z_pos(i))/τ + log Σ_{k≠i} exp(s(z_i, z_k)/τ)``."""
  checks.check_positive('temperature', temperature)

  def per_row(s, self_mask, pos_mask, _):
    logits = s / temperature
    return {'align': -take_masked(logits, pos_mask),
            'constrain': jax.nn.logsumexp(logits, axis=-1, where=~self_mask)}

  loss, aux = _contrastive(z1, z2, per_row, similarity=similarity, block_size=block_size)
  return loss, {'nt_xent': loss, **aux}


def balanced_contrastive(z1, z2, *, alpha=4.0, lam=2.0, similarity='cosine',
                         include_positive=False, block_size=None):
  """Balanced contrastive loss (arXiv 2510.10572).

  ``l_i = -s(z_i, z_pos(i)) + (λ/α) log Σ_{k ∉ {i, pos(i)}} exp(α s(z_i, z_k))``. With
  ``include_positive=True`` the positive joins the sum; then ``α = 1/τ, λ = 1`` gives
  ``τ · nt_xent``. The log-sum-exp subtracts the row maximum, so large ``α`` stays finite.
  """
  checks.check_positive('alpha', alpha)
  checks.check_positive('lam', lam)
  if not include_positive and z1.shape[0] < 2:
    raise ValueError('balanced_contrastive without the positive needs N >= 2 images per view')

  def per_row(s, self_mask, pos_mask, _):
    keep = ~self_mask if include_positive else ~(self_mask | pos_mask)
    return {'align': -take_masked(s, pos_mask),
            'constrain': (lam / alpha) * jax.nn.logsumexp(alpha * s, axis=-1, where=keep)}

  loss, aux = _contrastive(z1, z2, per_row, similarity=similarity, block_size=block_size)
  return loss, {'balanced': loss, **aux}


def nscl(z1, z2, labels, *, temperature=0.5, similarity='cosine', block_size=None):
  """Negatives-only supervised contrastive loss.

  ``l_i = -s_ip/τ + log(exp(s_ip/τ) + Σ_{k: y_k ≠ y_i} exp(s_ik/τ))``: as NT-Xent, but rows of
  the anchor's class (other than its positive) leave the denominator. ``labels`` is ``[N]``, one
  label per image; both views share it.
  """
  checks.check_positive('temperature', temperature)

  def per_row(s, self_mask, pos_mask, same_label):
    logits = s / temperature
    return {'align': -take_masked(logits, pos_mask),
            'constrain': jax.nn.logsumexp(logits, axis=-1, where=pos_mask | ~same_label)}

  loss, aux = _contrastive(z1, z2, per_row, similarity=similarity, block_size=block_size,
                           labels=labels)
  return loss, {'nscl': loss, **aux}


def supcon(z1, z2, labels, *, temperature=0.1, similarity='cosine', base_temperature=None,
           block_size=None):
  """Supervised contrastive loss, Khosla et al. 2020 eq. 2 ("L_out").

  ``l_i = -(1/|P(i)|) Σ_{p ∈ P(i)} [s_ip/τ - log Σ_{a ≠ i} exp(s_ia/τ)]`` with
  ``P(i) = {p ≠ i : y_p = y_i}`` (always holds the other view). The reference code's extra factor
  ``τ / base_temperature`` is applied when ``base_temperature`` is given.
  """
  checks.check_positive('temperature', temperature)
  scale = 1.0
  if base_temperature is not None:
    checks.check_positive('base_temperature', base_temperature)
    scale = temperature / base_temperature

  def per_row(s, self_mask, _, same_label):
    logits = s / temperature
    positives = same_label & ~self_mask
    return {'align': -scale * masked_mean(logits, positives),
            'constrain': scale * jax.nn.logsumexp(logits, axis=-1, where=~self_mask)}

  loss, aux = _contrastive(z1, z2, per_row, similarity=similarity, block_size=block_size,
                           labels=labels)
  return loss, {'supcon': loss, **aux}


def cross_entropy(logits, labels, *, label_smoothing=0.0):
  """Supervised softmax cross-entropy of ``logits [B, C]`` against integer ``labels [B]``."""
  if jnp.ndim(logits) != 2:
    raise ValueError(f'logits must have shape [B, C], got shape {jnp.shape(logits)}')
  checks.check_labels(labels, logits.shape[0])
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f'label_smoothing must be in [0, 1), got {label_smoothing!r}')
  logits = logits.astype(checks.compute_dtype(logits))
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
  accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
  return loss, {'cross_entropy': loss, 'accuracy': accuracy}
