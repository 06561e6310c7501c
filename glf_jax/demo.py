"""Loss demo on scikit-learn's 8x8 digits (ships offline): the embedded default job.

Pretrains a small MLP encoder with any GLF objective (default SimCLR+ADC with the pixel prior) on
two augmented views of the digits, then compares kNN accuracy and class geometry of the
pretrained encoder with the same network at its random initialisation. It exercises the loss
library end to end in about a minute on a laptop CPU; the ResNet training job supersedes it.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from glf_jax import losses, metrics
from glf_jax.evaluate.knn import knn_accuracy


class MLPEncoder(nnx.Module):
  """``x -> h`` (backbone features) ``-> z`` (projection): the two outputs SSCL needs."""

  def __init__(self, in_dim, hidden_dim, feature_dim, projection_dim, *, rngs: nnx.Rngs):
    self.backbone = nnx.Sequential(nnx.Linear(in_dim, hidden_dim, rngs=rngs), nnx.relu,
                                   nnx.Linear(hidden_dim, feature_dim, rngs=rngs))
    self.projector = nnx.Sequential(nnx.relu, nnx.Linear(feature_dim, feature_dim, rngs=rngs),
                                    nnx.relu, nnx.Linear(feature_dim, projection_dim, rngs=rngs))

  def __call__(self, x):
    h = self.backbone(x)
    return h, self.projector(h)


def augment_digit(key, image, *, noise_std, dropout):
  """One random view of an 8x8 digit in [0, 1]: shift by up to 1 px, contrast, noise, dropout."""
  k_shift, k_gain, k_noise, k_drop = jax.random.split(key, 4)
  shift = jax.random.randint(k_shift, (2,), 0, 3)
  padded = jnp.pad(image.reshape(8, 8), 1)
  view = jax.lax.dynamic_slice(padded, (shift[0], shift[1]), (8, 8)).reshape(-1)
  view = view * jax.random.uniform(k_gain, (), minval=0.7, maxval=1.3)
  view = view + noise_std * jax.random.normal(k_noise, view.shape)
  return jnp.where(jax.random.bernoulli(k_drop, dropout, view.shape), 0.0, view)


def make_train_step(graphdef, objective, tx, config):
  """The pure, jitted step ``(params, opt_state, images, key) -> (params, opt_state, aux)``."""
  augment = jax.vmap(lambda k, x: augment_digit(k, x, noise_std=config.noise_std,
                                                dropout=config.dropout))

  def loss_fn(params, images, labels, key):
    model = nnx.merge(graphdef, params)
    keys = jax.random.split(key, 2 * images.shape[0]).reshape(2, images.shape[0])
    v1, v2 = augment(keys[0], images), augment(keys[1], images)
    (_, z1), (_, z2) = model(v1), model(v2)
    # The pixel prior (the paper's "identity" prior): the views themselves.
    outputs = {'z1': z1, 'z2': z2, 'prior1': v1, 'prior2': v2}
    return objective(outputs, {'label': labels})

  @jax.jit
  def train_step(params, opt_state, images, labels, key):
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, images, labels, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    scalars = {k: v for k, v in aux.items() if jnp.ndim(v) == 0}
    return optax.apply_updates(params, updates), opt_state, scalars

  return train_step


def _evaluate(graphdef, params, data, config):
  x_train, y_train, x_test, y_test = data
  model = nnx.merge(graphdef, params)
  h_train, _ = model(jnp.asarray(x_train))
  h_test, _ = model(jnp.asarray(x_test))
  geometry = metrics.class_geometry(h_test, y_test)
  key = jax.random.key(config.seed + 1)
  k1, k2 = jax.random.split(key)
  augment = jax.vmap(lambda k, x: augment_digit(k, x, noise_std=config.noise_std,
                                                dropout=config.dropout))
  xs = jnp.asarray(x_test)
  h1, _ = model(augment(jax.random.split(k1, len(xs)), xs))
  h2, _ = model(augment(jax.random.split(k2, len(xs)), xs))
  return {
      'knn_top1': knn_accuracy(h_train, y_train, h_test, y_test, k=config.knn_k),
      'compactness': geometry['compactness'],
      'separability_mean': geometry['separability_mean'],
      'compactness/separability': geometry['ratio'],
      **metrics.alignment_uniformity(h1, h2),
  }


def run(config: ml_collections.ConfigDict, workdir: str | None = None) -> dict:
  """Trains, evaluates random-init vs pretrained, prints a table, returns (and saves) a summary."""
  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  x_train, x_test, y_train, y_test = train_test_split(
      x, digits.target.astype(np.int32), test_size=config.test_fraction, random_state=config.seed,
      stratify=digits.target)
  data = (x_train, y_train, x_test, y_test)

  model = MLPEncoder(64, config.hidden_dim, config.feature_dim, config.projection_dim,
                     rngs=nnx.Rngs(config.seed))
  graphdef, params = nnx.split(model)
  objective = losses.build_objective(config.objective)
  tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
  opt_state = tx.init(params)
  train_step = make_train_step(graphdef, objective, tx, config)
  initial = _evaluate(graphdef, params, data, config)

  rng = np.random.default_rng(config.seed)
  key = jax.random.key(config.seed)
  start = time.perf_counter()
  history = []
  for step in range(1, config.steps + 1):
    idx = rng.choice(len(x_train), config.batch_size, replace=False)
    key, step_key = jax.random.split(key)
    params, opt_state, aux = train_step(params, opt_state, x_train[idx], y_train[idx], step_key)
    if step == 1 or step % config.log_every == 0 or step == config.steps:
      aux = {k: float(v) for k, v in aux.items()}
      if not np.isfinite(aux['loss']):
        raise FloatingPointError(f'non-finite loss at step {step}: {aux}')
      history.append({'step': step, **aux})
      terms = '  '.join(f'{k}={aux[k]:.4f}' for k in ('loss', *objective.term_names))
      print(f'step {step:4d}/{config.steps}  {terms}', flush=True)
  train_seconds = time.perf_counter() - start
  final = _evaluate(graphdef, params, data, config)

  print(f'\n{config.objective.name} on digits, {config.steps} steps of batch {config.batch_size} '
        f'({train_seconds:.1f} s)\n')
  print(f'| metric (test split) | random init | pretrained |\n|---|---|---|')
  for name in initial:
    print(f'| {name} | {initial[name]:.4f} | {final[name]:.4f} |')
  summary = {'objective': config.objective.name, 'steps': config.steps,
             'train_seconds': train_seconds, 'random_init': initial, 'pretrained': final,
             'history': history}
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    print(f'\nsummary written to {os.path.join(workdir, "summary.json")}')
  return summary
