"""Evaluation: linear probe, feature extraction + cache, fine-tuning, the results table."""

import jax
import jax.numpy as jnp
from flax import nnx
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from glf_jax.data import DigitsSource
from glf_jax.evaluate import features, finetune, linear_probe, report
from glf_jax.models import resnet_tiny


def _blobs(n, d=16, classes=4, seed=0, spread=0.3):
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((classes, d)) * 3
  labels = rng.integers(0, classes, n)
  return (centres[labels] + spread * rng.standard_normal((n, d))).astype(np.float32), labels


def test_probe_separates_blobs_and_is_chance_on_random_labels():
  x, y = _blobs(600)
  result = linear_probe.linear_probe(x[:400], y[:400], x[400:], y[400:], num_classes=4,
                                     epochs=20, batch_size=64)
  assert result['top1'] > 0.95 and result['top5'] >= result['top1']
  rng = np.random.default_rng(1)
  noise = rng.standard_normal((600, 16)).astype(np.float32)
  labels = rng.integers(0, 4, 600)
  chance = linear_probe.linear_probe(noise[:400], labels[:400], noise[400:], labels[400:],
                                     num_classes=4, epochs=20, batch_size=64)
  assert chance['top1'] < 0.45
  again = linear_probe.linear_probe(x[:400], y[:400], x[400:], y[400:], num_classes=4,
                                    epochs=20, batch_size=64)
  assert again == result  # deterministic in the seed


def test_probe_matches_sklearn_logistic_regression_on_digits():
  digits = load_digits()
  x, y = digits.data.astype(np.float32), digits.target
  ours = linear_probe.linear_probe(x[:1200], y[:1200], x[1200:], y[1200:], num_classes=10,
                                   epochs=50)['top1']
  theirs = LogisticRegression(max_iter=2000).fit(x[:1200] / 16, y[:1200]).score(x[1200:] / 16,
                                                                                 y[1200:])
  assert abs(ours - theirs) < 0.04, (ours, theirs)


@pytest.mark.parametrize('kwargs,message', [
    (dict(epochs=0), 'epochs'), (dict(learning_rate=0.0), 'learning_rate'),
    (dict(num_classes=1), 'num_classes'), (dict(optimizer='lbfgs'), 'optimizer'),
])
def test_probe_rejects_bad_arguments(kwargs, message):
  x, y = _blobs(40)
  args = {'num_classes': 4, **kwargs}
  with pytest.raises(ValueError, match=message):
    linear_probe.linear_probe(x, y, x, y, **args)


def test_extract_features_in_order_with_padding_and_cache(tmp_path):
  source = DigitsSource('test')
  shapes = []

  def encode(images):
    shapes.append(images.shape)
    return images.reshape(images.shape[0], -1)[:, :5].astype(np.float32)
  path = str(tmp_path / 'f.npz')
  x, y = features.extract_features(encode, source, batch_size=64, cache_path=path,
                                   cache_key='run1')
  assert len(set(shapes)) == 1 and x.shape == (len(source), 5)
  for i in (0, 17, len(source) - 1):
    np.testing.assert_array_equal(x[i], source[i]['image'].reshape(-1)[:5])
    assert y[i] == source[i]['label']
  calls = len(shapes)
  features.extract_features(encode, source, batch_size=64, cache_path=path, cache_key='run1')
  assert len(shapes) == calls  # read from the cache
  features.extract_features(encode, source, batch_size=64, cache_path=path, cache_key='run2')
  assert len(shapes) > calls  # another key: recomputed
  with open(path, 'wb') as f:
    f.write(b'not a zip')
  x2, _ = features.extract_features(encode, source, batch_size=64, cache_path=path,
                                    cache_key='run2')
  np.testing.assert_array_equal(x2, x)


def test_finetune_learns_and_frozen_backbone_stays_fixed():
  train, test = DigitsSource('train', image_size=16), DigitsSource('test', image_size=16)
  config = finetune.default_finetune_config()
  config.image_size, config.epochs, config.batch_size, config.crop_scale = 16, 6, 64, (0.6, 1.)
  config.learning_rate = 0.4
  backbone = resnet_tiny(rngs=nnx.Rngs(0))
  before = [np.asarray(x) for x in jax.tree.leaves(nnx.state(backbone))]
  result = finetune.finetune(backbone, train, test, num_classes=10, config=config)
  assert result['top1'] > 0.4, result  # chance is 0.1
  after = [np.asarray(x) for x in jax.tree.leaves(nnx.state(backbone))]
  for a, b in zip(before, after):  # the caller's module is untouched
    np.testing.assert_array_equal(a, b)
  config.freeze_backbone = True
  frozen = finetune.finetune(backbone, train, test, num_classes=10, config=config)
  assert frozen['top1'] > 0.15 and np.isfinite(frozen['train_loss'])


def test_format_table():
  table = report.format_table({'random init': {'knn/k20': 0.1}, 'pretrained': {'knn/k20': 0.9,
                                                                             'x': 1.0}})
  lines = table.splitlines()
  assert lines[0].split() == ['metric', 'random', 'init', 'pretrained']
  assert lines[2].split() == ['knn/k20', '0.1000', '0.9000']
  assert lines[3].split() == ['x', '-', '1.0000']
