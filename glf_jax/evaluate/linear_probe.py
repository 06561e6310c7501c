"""Linear probe on frozen features: a linear classifier trained with optax (SPEC §4).

Features are standardised with the train split's statistics; the classifier is trained with SGD
(momentum 0.9, cosine decay) or AdamW on shuffled mini-batches; the whole training loop is one
jitted ``lax.scan`` over the steps, so a probe on 50,000 features takes seconds on a CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def topk_accuracy(logits, labels, k: int) -> float:
  k = min(k, logits.shape[-1])
  top = np.argsort(-np.asarray(logits), axis=-1)[:, :k]
  return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=-1)))


def linear_probe(train_features, train_labels, test_features, test_labels, *, num_classes: int,
                 epochs: int = 100, batch_size: int = 256, learning_rate: float = 0.1,
                 weight_decay: float = 0.0, optimizer: str = 'sgd', seed: int = 0,
                 standardize: bool = True) -> dict:
  """Trains a linear classifier on train features; test top-1/top-5 (and train top-1)."""
  x_train = np.asarray(train_features, np.float32)
  x_test = np.asarray(test_features, np.float32)
  y_train = np.asarray(train_labels, np.int32)
  y_test = np.asarray(test_labels, np.int32)
  if epochs < 1 or batch_size < 1:
    raise ValueError(f'epochs and batch_size must be >= 1, got {epochs}, {batch_size}')
  if learning_rate <= 0:
    raise ValueError(f'learning_rate must be > 0, got {learning_rate}')
  if num_classes < 2:
    raise ValueError(f'num_classes must be >= 2, got {num_classes}')
  if optimizer not in ('sgd', 'adamw'):
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
  if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
    raise ValueError(f'features must be [n, d] with one d, got {x_train.shape}, {x_test.shape}')
  if len(x_train) != len(y_train) or len(x_test) != len(y_test):
    raise ValueError('features and labels must have the same number of rows')
  for labels in (y_train, y_test):
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(f'labels must lie in [0, {num_classes})')
  if standardize:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

  batch_size = min(batch_size, len(x_train))
  steps_per_epoch = len(x_train) // batch_size
  total = epochs * steps_per_epoch
  schedule = optax.cosine_decay_schedule(learning_rate, total)
  if optimizer == 'sgd':
    tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=0.9))
  else:
    tx = optax.adamw(schedule, weight_decay=weight_decay)
  d = x_train.shape[1]
  params = {'kernel': jnp.zeros((d, num_classes)), 'bias': jnp.zeros((num_classes,))}
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(len(x_train))[:steps_per_epoch * batch_size]
                          for _ in range(epochs)]).reshape(total, batch_size)

  def loss_fn(p, x, y):
    logits = x @ p['kernel'] + p['bias']
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def train(params, x_all, y_all, order):
    def body(carry, idx):
      p, opt_state = carry
      grads = jax.grad(loss_fn)(p, x_all[idx], y_all[idx])
      updates, opt_state = tx.update(grads, opt_state, p)
      return (optax.apply_updates(p, updates), opt_state), None
    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), order)
    return params

  params = train(params, jnp.asarray(x_train), jnp.asarray(y_train), jnp.asarray(order))
  predict = jax.jit(lambda p, x: x @ p['kernel'] + p['bias'])
  test_logits = np.asarray(predict(params, x_test))
  train_logits = np.asarray(predict(params, x_train))
  return {'top1': topk_accuracy(test_logits, y_test, 1),
          'top5': topk_accuracy(test_logits, y_test, 5),
          'train_top1': topk_accuracy(train_logits, y_train, 1), 'epochs': epochs}
