"""What a prior kind is: a name and how it is built from the run's config (``Prior``), and the
encoder prior every network-based kind shares."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections

# apply_fn(prior_state, views, batch=None) -> features [2B, d]
ApplyFn = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class Prior:
  """One ``prior.kind``.

  Attributes:
    name: the ``prior.kind`` value.
    build: ``(config, source) -> (apply_fn, prior_state)`` (``source``: the training source).
    needs_path: whether ``prior.path`` must be set.
  """
  name: str
  build: Callable[[ml_collections.ConfigDict, Any], tuple[ApplyFn, Any]]
  needs_path: bool = False


def encoder_prior(encoder: nnx.Module, feature: str) -> tuple[ApplyFn, Any]:
  """A frozen encoder as a prior: ``feature`` (``'h'`` or ``'z'``) of the views in eval mode
  (BatchNorm running statistics), under ``stop_gradient``."""
  encoder.eval()
  graphdef, state = nnx.split(encoder)

  def apply_fn(prior_state, views, batch=None):
    del batch
    out = nnx.merge(graphdef, prior_state)(views)
    return jax.lax.stop_gradient(out[feature].astype(jnp.float32))
  return apply_fn, state
