"""The train state: one pytree of arrays, everything a resumed run needs (checkpointed whole).

``TrainState`` is a plain dict (orbax saves and restores it as it is)::

    step                    int32 []       optimiser steps taken (skipped non-finite ones included)
    params, batch_stats     nnx.State      the online encoder (parameters / BatchNorm statistics)
    opt_state               optax state
    target_params,          nnx.State      BYOL's EMA target (empty dicts for other methods)
      target_batch_stats
    probe                   dict           the online linear classifier: kernel, bias, opt_state
    rng                     uint32 [2]     the run's base key; step k uses fold_in(rng, k), so the
                                           key stream needs no state update and resumes exactly
    nonfinite_in_a_row      int32 []       consecutive skipped updates (the NaN guard)
    nonfinite_total         int32 []

The graph definitions (``nnx.split``) are not state: they are rebuilt from the config.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
import optax

from glf_jax.losses.glf import parse_name
from glf_jax.models import build_encoder

TrainState = dict[str, Any]


def split_encoder(encoder: nnx.Module):
  """``(train_graphdef, eval_graphdef, params, batch_stats)`` of an encoder.

  BatchNorm's mode is static (part of the graph definition), so the train and eval forms of the
  same encoder are two graphdefs over one state.
  """
  encoder.train()
  train_graphdef, params, batch_stats = nnx.split(encoder, nnx.Param, nnx.BatchStat)
  encoder.eval()
  eval_graphdef, _, _ = nnx.split(encoder, nnx.Param, nnx.BatchStat)
  encoder.train()
  return train_graphdef, eval_graphdef, params, batch_stats


def init_probe(feature_dim: int, num_classes: int, probe_tx: optax.GradientTransformation):
  params = {'kernel': jnp.zeros((feature_dim, num_classes), jnp.float32),
            'bias': jnp.zeros((num_classes,), jnp.float32)}
  return {'params': params, 'opt_state': probe_tx.init(params)}


def init_encoder(config: ml_collections.ConfigDict):
  """``(train_graphdef, eval_graphdef, params, batch_stats, feature_dim)`` of the run's encoder.

  Deterministic in ``config.seed``: two runs with one seed start from identical parameters (the
  shared-randomness studies, and the "random init" column of the evaluation, rely on it).
  """
  encoder = build_encoder(config.model, rngs=nnx.Rngs(config.seed))
  return (*split_encoder(encoder), encoder.feature_dim)


def init_train_state(config: ml_collections.ConfigDict, *, tx: optax.GradientTransformation,
                     probe_tx: optax.GradientTransformation, num_classes: int):
  """The encoder from :func:`init_encoder` and its initial train state.

  Returns ``(train_graphdef, eval_graphdef, state)``.
  """
  train_graphdef, eval_graphdef, params, batch_stats, feature_dim = init_encoder(config)
  uses_target = parse_name(config.objective.name)[0] == 'byol'
  # The EMA target starts as a copy of the online network (BYOL §3.1).
  target_params = jax.tree.map(jnp.copy, params) if uses_target else {}
  target_batch_stats = jax.tree.map(jnp.copy, batch_stats) if uses_target else {}
  state = {
      'step': jnp.zeros((), jnp.int32),
      'params': params,
      'batch_stats': batch_stats,
      'opt_state': tx.init(params),
      'target_params': target_params,
      'target_batch_stats': target_batch_stats,
      'probe': init_probe(feature_dim, num_classes, probe_tx),
      'rng': jax.random.key_data(jax.random.key(config.seed)),
      'nonfinite_in_a_row': jnp.zeros((), jnp.int32),
      'nonfinite_total': jnp.zeros((), jnp.int32),
  }
  return train_graphdef, eval_graphdef, state
