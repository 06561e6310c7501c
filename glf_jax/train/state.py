"""The train state: one pytree of arrays, everything a resumed run needs (checkpointed whole).

``TrainState`` is a plain dict (orbax saves and restores it as it is)::

    step                    int32 []       optimiser steps taken (skipped non-finite ones included)
    params, batch_stats     nnx.State      the online encoder (parameters / BatchNorm statistics)
    opt_state               optax state
    method                  dict           the method's extra state (``Method.init_state``), e.g.
                                           BYOL's EMA target ``{'target_params',
                                           'target_batch_stats'}``; ``{}`` for most methods
    probe                   dict           the online linear classifier: params, opt_state
    rng                     uint32 [2]     the run's base key; step k uses fold_in(rng, k), so the
                                           key stream needs no state update and resumes exactly
    nonfinite_in_a_row      int32 []       consecutive skipped updates (the NaN guard)
    nonfinite_total         int32 []

The graph definitions (``nnx.split``) are not state: they are rebuilt from ``config.model``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
import optax

from glf_jax.methods import Method, RunInfo
from glf_jax.models import build_encoder, linear_init, split_encoder

TrainState = dict[str, Any]


def init_probe(feature_dim: int, num_classes: int, probe_tx: optax.GradientTransformation):
  params = linear_init(feature_dim, num_classes)
  return {'params': params, 'opt_state': probe_tx.init(params)}


def init_encoder(config: ml_collections.ConfigDict):
  """``(train_graphdef, eval_graphdef, params, batch_stats, feature_dim)`` of the run's encoder.

  Deterministic in ``config.seed``: two runs with one seed start from identical parameters (the
  shared-randomness studies, and the "random init" column of the evaluation, rely on it).
  """
  encoder = build_encoder(config.model, rngs=nnx.Rngs(config.seed))
  return (*split_encoder(encoder), encoder.feature_dim)


def init_train_state(config: ml_collections.ConfigDict, *, method: Method, run: RunInfo,
                     tx: optax.GradientTransformation, probe_tx: optax.GradientTransformation,
                     num_classes: int):
  """The encoder from :func:`init_encoder` and its initial train state.

  Returns ``(train_graphdef, eval_graphdef, state)``.
  """
  train_graphdef, eval_graphdef, params, batch_stats, feature_dim = init_encoder(config)
  state = {
      'step': jnp.zeros((), jnp.int32),
      'params': params,
      'batch_stats': batch_stats,
      'opt_state': tx.init(params),
      'method': method.init_state(params, batch_stats, run),
      'probe': init_probe(feature_dim, num_classes, probe_tx),
      'rng': jax.random.key_data(jax.random.key(config.seed)),
      'nonfinite_in_a_row': jnp.zeros((), jnp.int32),
      'nonfinite_total': jnp.zeros((), jnp.int32),
  }
  return train_graphdef, eval_graphdef, state
