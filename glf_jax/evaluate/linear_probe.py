"""Linear probe on frozen features: a linear classifier trained with optax (docs/maths.md §4).

The standard linear evaluation protocol of SimCLR / BYOL / solo-learn on cached features:

* features are standardised with the training split's per-dimension mean and std;
* a linear layer ``logits = x W + b`` (zero-initialised) is trained with softmax cross-entropy on
  mini-batches, reshuffled every epoch (the remainder of an epoch that does not fill a batch is
  dropped), by SGD (momentum 0.9, cosine decay to 0, decoupled L2 on ``W``) or AdamW (cosine
  decay);
* test top-1 and top-5 accuracy (top-k clipped to the number of classes) are reported.

The training loop is a jitted ``lax.scan`` over epochs (a nested scan over steps), on
device-resident features, with the permutations drawn on device from ``seed``, called in at
most ten equal parts so that ``glf_jax.runtime.progress`` can show it: a probe on 50,000
features takes seconds on a CPU, and the result is a deterministic function of its arguments.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ml_collections

from glf_jax.runtime import progress
from glf_jax.evaluate import common
from glf_jax.losses import checks
from glf_jax.models import classification_loss, decay_mask, linear_init, linear_logits

OPTIMIZERS = ('sgd', 'adamw')
# Dimensions whose training std is below this are left unscaled (only centred): dividing by a
# near-zero std would blow up any test value that differs from the constant.
_MIN_STD = 1e-6
# At most this many jitted calls (progress updates) per probe training.
_PROGRESS_CALLS = 10


def topk_accuracy(logits, labels, k: int) -> float:
  """Fraction of rows whose label is among the ``min(k, classes)`` largest logits."""
  logits = np.asarray(logits)
  labels = np.asarray(labels)
  if logits.ndim != 2 or labels.shape != (logits.shape[0],):
    raise ValueError(f'logits must be [n, classes] and labels [n], got shapes {logits.shape} '
                     f'and {labels.shape}')
  if logits.shape[0] == 0:
    raise ValueError('topk_accuracy needs at least one row')
  k = max(1, min(int(k), logits.shape[-1]))
  top = np.argpartition(-logits, k - 1, axis=-1)[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=-1)))


def check_int(name: str, value, minimum: int) -> int:
  """``value`` as an int, or a ValueError naming ``name`` if it is not an int >= ``minimum``."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')
  return int(value)


def _check_split(what: str, features, labels, num_classes: int):
  x = np.asarray(features, np.float32)
  y = np.asarray(labels)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f'{what}_features must be a non-empty [n, d] array, got shape {x.shape}')
  if y.ndim != 1 or y.shape[0] != x.shape[0]:
    raise ValueError(f'{what}_labels must be [n] with n = {x.shape[0]} rows of '
                     f'{what}_features, got shape {y.shape}')
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'{what}_labels must be integers, got dtype {y.dtype}')
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f'{what}_labels must lie in [0, num_classes) = [0, {num_classes}), got '
                     f'[{y.min()}, {y.max()}]')
  if not np.all(np.isfinite(x)):
    raise ValueError(f'{what}_features must be finite')
  return x, y.astype(np.int32)


def make_optimizer(optimizer: str, learning_rate: float, weight_decay: float,
                   total_steps: int) -> optax.GradientTransformation:
  """SGD (momentum 0.9) + cosine decay with L2 on the kernel, or AdamW + cosine decay."""
  schedule = optax.cosine_decay_schedule(learning_rate, total_steps)
  # Decay on the kernel only (decay_mask: ndim >= 2), as for the encoder.
  if optimizer == 'sgd':
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                       optax.sgd(schedule, momentum=0.9))
  return optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask)


@functools.partial(jax.jit, static_argnames=('batch_size', 'optimizer', 'learning_rate',
                                             'weight_decay', 'total_steps'))
def _train_epochs(carry, x_train, y_train, epoch_keys, *, batch_size, optimizer, learning_rate,
                  weight_decay, total_steps):
  """``(params, opt_state)`` after one epoch per key: a scan over epochs, each a scan over
  shuffled batches."""
  num_train = x_train.shape[0]
  steps_per_epoch = num_train // batch_size
  tx = make_optimizer(optimizer, learning_rate, weight_decay, total_steps)

  def loss_fn(p, x, y):
    return classification_loss(linear_logits(p, x), y)[0]

  def step(carry, batch_rows):
    p, opt_state = carry
    grads = jax.grad(loss_fn)(p, x_train[batch_rows], y_train[batch_rows])
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), None

  def epoch(carry, epoch_key):
    order = jax.random.permutation(epoch_key, num_train)[:steps_per_epoch * batch_size]
    return jax.lax.scan(step, carry, order.reshape(steps_per_epoch, batch_size))

  carry, _ = jax.lax.scan(epoch, carry, epoch_keys)
  return carry


def _epochs_per_call(epochs: int) -> int:
  """The smallest divisor of ``epochs`` that splits it into at most ``_PROGRESS_CALLS`` calls:
  every call has the same length, so the jitted scan compiles once."""
  return next(d for d in range(1, epochs + 1)
              if epochs % d == 0 and epochs // d <= _PROGRESS_CALLS)


def _train_probe(x_train, y_train, key, *, num_classes, epochs, batch_size, optimizer,
                 learning_rate, weight_decay):
  """Trained ``{'kernel', 'bias'}``, a few epochs per jitted call (progress in between)."""
  total_steps = epochs * (x_train.shape[0] // batch_size)
  settings = dict(batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate,
                  weight_decay=weight_decay, total_steps=total_steps)
  params = linear_init(x_train.shape[1], num_classes)
  carry = (params, make_optimizer(optimizer, learning_rate, weight_decay, total_steps
                                  ).init(params))
  keys = jax.random.split(key, epochs)
  chunk = _epochs_per_call(epochs)
  with progress.Progress(epochs, desc='linear probe', unit='epoch') as bar:
    for start in range(0, epochs, chunk):
      carry = _train_epochs(carry, x_train, y_train, keys[start:start + chunk], **settings)
      if bar.enabled:
        jax.block_until_ready(carry)  # the time of the epochs, not of their dispatch
      bar.update(start + chunk)
  return carry[0]


_logits = jax.jit(linear_logits)


def linear_probe(train_features, train_labels, test_features, test_labels, *, num_classes: int,
                 epochs: int = 100, batch_size: int = 256, learning_rate: float = 0.1,
                 weight_decay: float = 0.0, optimizer: str = 'sgd', seed: int = 0,
                 standardize: bool = True) -> dict:
  """Trains a linear classifier on frozen train features; reports test top-1/top-5 (docs/maths.md §4).

  Args:
    train_features, train_labels: ``[n, d]`` features and ``[n]`` int labels in
      ``[0, num_classes)``.
    test_features, test_labels: ``[m, d]`` and ``[m]``, the same ``d``.
    num_classes: number of classes (>= 2).
    epochs: passes over the training features (>= 1).
    batch_size: mini-batch rows (>= 1; clipped to ``n``).
    learning_rate: peak learning rate (> 0), decayed to 0 by a cosine.
    weight_decay: L2 (SGD) / decoupled (AdamW) decay of the kernel (>= 0).
    optimizer: ``'sgd'`` (momentum 0.9) or ``'adamw'``.
    seed: the shuffling seed; equal arguments give equal results.
    standardize: standardise with the train mean / std first.

  Returns:
    ``{'top1', 'top5', 'train_top1'}`` (floats in [0, 1]) and ``'epochs'``.

  Raises:
    ValueError: an argument out of range (the message names it) or mismatched shapes.
  """
  num_classes = check_int('num_classes', num_classes, 2)
  epochs = check_int('epochs', epochs, 1)
  batch_size = check_int('batch_size', batch_size, 1)
  checks.check_positive('learning_rate', learning_rate)
  checks.check_nonnegative('weight_decay', weight_decay)
  if optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {optimizer!r}')
  seed = check_int('seed', seed, 0)
  x_train, y_train = _check_split('train', train_features, train_labels, num_classes)
  x_test, y_test = _check_split('test', test_features, test_labels, num_classes)
  if x_train.shape[1] != x_test.shape[1]:
    raise ValueError(f'train_features and test_features must have the same dimension d, got '
                     f'{x_train.shape[1]} and {x_test.shape[1]}')
  if standardize:
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > _MIN_STD, std, 1.0).astype(np.float32)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

  params = _train_probe(jnp.asarray(x_train), jnp.asarray(y_train), jax.random.key(seed),
                        num_classes=num_classes, epochs=epochs,
                        batch_size=min(batch_size, len(x_train)), optimizer=optimizer,
                        learning_rate=float(learning_rate), weight_decay=float(weight_decay))
  test_logits = np.asarray(_logits(params, jnp.asarray(x_test)))
  train_logits = np.asarray(_logits(params, jnp.asarray(x_train)))
  return {'top1': topk_accuracy(test_logits, y_test, 1),
          'top5': topk_accuracy(test_logits, y_test, 5),
          'train_top1': topk_accuracy(train_logits, y_train, 1),
          'epochs': epochs}


def default_linear_settings() -> ml_collections.ConfigDict:
  """``config.eval.linear``: the arguments of :func:`linear_probe` (docs/maths.md §4)."""
  return ml_collections.ConfigDict(dict(epochs=100, batch_size=256, learning_rate=0.1,
                                        weight_decay=0.0, optimizer='sgd'))


def linear_evaluator(context: common.Context, settings) -> dict:
  """``linear/top1``, ``linear/top5``: a linear probe on the frozen ``h`` of the two splits."""
  train_x, train_y = context.features('train')
  test_x, test_y = context.features('test')
  result = linear_probe(train_x, train_y, test_x, test_y, num_classes=context.num_classes,
                        seed=context.seed, **settings.to_dict())
  return {'linear/top1': result['top1'], 'linear/top5': result['top5']}


EVALUATOR = common.Evaluator('linear', linear_evaluator, default_linear_settings)
