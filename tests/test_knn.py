"""kNN evaluator against a float64 NumPy reference of the weighted vote."""

import numpy as np
import pytest

from glf_jax.evaluate.knn import knn_accuracy


def _reference(train, y_train, test, y_test, k, temperature, num_classes):
  train = train / np.linalg.norm(train, axis=1, keepdims=True)
  correct = 0
  for x, y in zip(test, y_test):
    sims = train @ (x / np.linalg.norm(x))
    nearest = np.argsort(-sims, kind='stable')[:k]
    votes = np.zeros(num_classes)
    for i in nearest:
      votes[y_train[i]] += np.exp(sims[i] / temperature)
    correct += int(np.argmax(votes) == y)
  return correct / len(y_test)


@pytest.mark.parametrize('k,temperature', [(1, 0.07), (5, 0.07), (20, 0.5)])
def test_knn_matches_reference(k, temperature):
  rng = np.random.default_rng(k)
  centres = 2 * rng.standard_normal((4, 6))
  y_train, y_test = rng.integers(0, 4, 60), rng.integers(0, 4, 33)
  train = centres[y_train] + rng.standard_normal((60, 6))
  test = centres[y_test] + rng.standard_normal((33, 6))
  acc = knn_accuracy(train, y_train, test, y_test, k=k, temperature=temperature, chunk_size=8)
  assert acc == pytest.approx(_reference(train, y_train, test, y_test, k, temperature, 4))
  assert acc > 0.4  # clustered data: well above the 0.25 chance level


def test_knn_rejects_bad_k():
  x = np.ones((5, 2))
  with pytest.raises(ValueError, match='k must be in'):
    knn_accuracy(x, np.zeros(5, int), x, np.zeros(5, int), k=6)
