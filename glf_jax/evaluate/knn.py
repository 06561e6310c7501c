"""Weighted kNN classification on frozen features (Wu et al. 2018, as used by SimCLR/solo-learn).

Cosine similarity on ℓ2-normalised features; each of the ``k`` nearest training samples votes for
its class with weight ``exp(sim / T)`` (``T = 0.07``, docs/maths.md §4).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import ml_collections

from glf_jax.evaluate import common
from glf_jax.losses.similarity import l2_normalize


@functools.partial(jax.jit, static_argnames=('k', 'num_classes'))
def _knn_scores(train, train_labels, test, *, k, num_classes, temperature):
  sims = l2_normalize(test) @ l2_normalize(train).T
  top_sims, top_idx = jax.lax.top_k(sims, k)
  votes = jax.nn.one_hot(train_labels[top_idx], num_classes) * jnp.exp(top_sims / temperature)[..., None]
  return jnp.sum(votes, axis=1)


def knn_accuracy(train_features, train_labels, test_features, test_labels, *, k=20,
                 temperature=0.07, num_classes=None, chunk_size=1024) -> float:
  """Top-1 accuracy of the temperature-weighted kNN classifier.

  Test rows are processed ``chunk_size`` at a time so the ``[test, train]`` similarity matrix
  never has to fit at once.
  """
  train_labels = np.asarray(train_labels)
  test_labels = np.asarray(test_labels)
  if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
    raise ValueError('features and labels must have the same number of rows')
  if not 1 <= k <= len(train_labels):
    raise ValueError(f'k must be in [1, {len(train_labels)}] (number of training samples), got {k}')
  if num_classes is None:
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
  train = jnp.asarray(train_features, jnp.float32)
  correct = 0
  for start in range(0, len(test_labels), chunk_size):
    scores = _knn_scores(train, jnp.asarray(train_labels), 
                         jnp.asarray(test_features[start:start + chunk_size], jnp.float32),
                         k=k, num_classes=num_classes, temperature=temperature)
    correct += int(np.sum(np.argmax(np.asarray(scores), -1) == test_labels[start:start + chunk_size]))
  return correct / len(test_labels)


def default_knn_settings() -> ml_collections.ConfigDict:
  """``config.eval.knn``: neighbour counts ``k`` (each clipped to the training rows) and ``T``."""
  return ml_collections.ConfigDict(dict(k=(20, 200), temperature=0.07))


def knn_evaluator(context: common.Context, settings) -> dict:
  """``knn/k<k>`` for each ``k``: weighted kNN of the test features among the train features."""
  train_x, train_y = context.features('train')
  test_x, test_y = context.features('test')
  return {f'knn/k{int(k)}': knn_accuracy(
      train_x, train_y, test_x, test_y, k=min(int(k), len(train_y)),
      temperature=float(settings.temperature), num_classes=context.num_classes)
          for k in settings.k}


EVALUATOR = common.Evaluator('knn', knn_evaluator, default_knn_settings)
