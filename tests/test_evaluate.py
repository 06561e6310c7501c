"""Evaluation: linear probe, feature extraction + cache, eval-mode encoders, fine-tuning, report."""

import dataclasses
import os

import jax
from flax import nnx
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from glf_jax.data import augment
from glf_jax.data import DigitsSource
from glf_jax.data.datasets import dataset_info
from glf_jax import evaluate
from glf_jax.evaluate import common, features, finetune, linear_probe, report
from glf_jax.models import build_encoder, default_model_config, resnet_tiny

DIGITS_MEAN, DIGITS_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
DigitsInfo = dataset_info('digits')


def _blobs(n, d=16, classes=4, seed=0, spread=0.3):
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((classes, d)) * 3
  labels = rng.integers(0, classes, n)
  return (centres[labels] + spread * rng.standard_normal((n, d))).astype(np.float32), labels


def _leaves(module_or_state):
  state = module_or_state if isinstance(module_or_state, nnx.State) else nnx.state(module_or_state)
  return [np.array(x) for x in jax.tree.leaves(state)]


def _assert_same_leaves(before, after):
  assert len(before) == len(after)
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# linear_probe


def test_probe_separates_blobs_deterministically():
  x, y = _blobs(600)
  kwargs = dict(num_classes=4, epochs=20, batch_size=64)
  result = linear_probe.linear_probe(x[:400], y[:400], x[400:], y[400:], **kwargs)
  assert result['top1'] > 0.95 and result['train_top1'] > 0.95, result
  assert result['top5'] >= result['top1'] and result['epochs'] == 20
  again = linear_probe.linear_probe(x[:400], y[:400], x[400:], y[400:], **kwargs)
  assert again == result  # deterministic in the seed
  adamw = linear_probe.linear_probe(x[:400], y[:400], x[400:], y[400:], optimizer='adamw',
                                    learning_rate=0.01, weight_decay=1e-4, **kwargs)
  assert adamw['top1'] > 0.95, adamw


def test_probe_is_near_chance_on_random_labels():
  rng = np.random.default_rng(1)
  noise = rng.standard_normal((1000, 16)).astype(np.float32)
  labels = rng.integers(0, 4, 1000)
  result = linear_probe.linear_probe(noise[:600], labels[:600], noise[600:], labels[600:],
                                     num_classes=4, epochs=20, batch_size=64)
  assert 0.15 < result['top1'] < 0.35, result  # chance is 0.25; 400 test rows: std ~0.02
  assert result['top5'] == 1.0  # top-5 of 4 classes is clipped to top-4: always right


def test_probe_top5_counts_the_five_best_classes():
  x, y = _blobs(600, classes=10, spread=8.0)  # overlapping classes: top-1 < top-5 < 1
  result = linear_probe.linear_probe(x[:400], y[:400], x[400:], y[400:], num_classes=10,
                                     epochs=10, batch_size=64)
  assert 0.1 < result['top1'] < result['top5'] < 1.0, result


def test_topk_accuracy_by_hand():
  logits = np.array([[3., 2., 1., 0.], [0., 1., 2., 3.], [1., 3., 2., 0.]])
  labels = np.array([0, 1, 3])
  assert linear_probe.topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
  assert linear_probe.topk_accuracy(logits, labels, 2) == pytest.approx(1 / 3)
  assert linear_probe.topk_accuracy(logits, labels, 3) == pytest.approx(2 / 3)
  assert linear_probe.topk_accuracy(logits, labels, 5) == 1.0  # clipped to 4 classes


def test_probe_matches_sklearn_logistic_regression_on_digits():
  digits = load_digits()
  x, y = digits.data.astype(np.float32), digits.target
  ours = linear_probe.linear_probe(x[:1200], y[:1200], x[1200:], y[1200:], num_classes=10,
                                   epochs=50, weight_decay=1e-4)['top1']
  theirs = LogisticRegression(max_iter=2000).fit(x[:1200] / 16, y[:1200]).score(x[1200:] / 16,
                                                                                 y[1200:])
  assert theirs > 0.85
  assert abs(ours - theirs) < 0.04, (ours, theirs)


@pytest.mark.parametrize('kwargs,message', [
    (dict(epochs=0), 'epochs'),
    (dict(batch_size=0), 'batch_size'),
    (dict(learning_rate=0.0), 'learning_rate'),
    (dict(learning_rate=float('nan')), 'learning_rate'),
    (dict(weight_decay=-1.0), 'weight_decay'),
    (dict(num_classes=1), 'num_classes'),
    (dict(num_classes=3), 'train_labels must lie in'),
    (dict(optimizer='lbfgs'), 'optimizer'),
    (dict(test_features=np.zeros((40, 5), np.float32)), 'same dimension'),
    (dict(train_labels=np.zeros(39, np.int64)), 'train_labels'),
    (dict(test_labels=np.full(40, 0.5)), 'test_labels must be integers'),
])
def test_probe_rejects_bad_arguments(kwargs, message):
  x, y = _blobs(40)
  args = dict(train_features=x, train_labels=y, test_features=x, test_labels=y, num_classes=4)
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    linear_probe.linear_probe(**args)


# ------------------------------------------------------------------------------------------------
# extract_features


def _counting_encoder():
  shapes = []

  def encode(images):
    shapes.append(images.shape)
    return images.reshape(images.shape[0], -1)[:, :5].astype(np.float32)
  return encode, shapes


def test_extract_features_in_order_with_padded_last_batch():
  source = DigitsSource('test')  # 450 rows: 7 batches of 64, the last with 2 real rows
  encode, shapes = _counting_encoder()
  x, y = features.extract_features(encode, source, batch_size=64)
  assert shapes == [(64, 8, 8, 3)] * 8  # constant shape: a jitted encode_fn compiles once
  assert x.shape == (450, 5) and x.dtype == np.float32 and y.dtype == np.int32
  expected = np.stack([source[i]['image'].reshape(-1)[:5] for i in range(len(source))])
  np.testing.assert_array_equal(x, expected)
  np.testing.assert_array_equal(y, [source[i]['label'] for i in range(len(source))])
  small, _ = features.extract_features(encode, source, batch_size=1000)  # one padded batch
  np.testing.assert_array_equal(small, x)


def test_extract_features_cache_reuse_key_and_corruption(tmp_path):
  source = DigitsSource('test')
  encode, shapes = _counting_encoder()
  path = str(tmp_path / 'sub' / 'f.npz')
  x, y = features.extract_features(encode, source, batch_size=128, cache_path=path,
                                   cache_key='run1')
  assert os.listdir(tmp_path / 'sub') == ['f.npz']  # no temporary file left behind
  calls = len(shapes)
  x1, y1 = features.extract_features(encode, source, batch_size=128, cache_path=path,
                                     cache_key='run1')
  assert len(shapes) == calls  # read from the cache
  np.testing.assert_array_equal(x1, x)
  np.testing.assert_array_equal(y1, y)
  assert x1.dtype == np.float32 and y1.dtype == np.int32

  features.extract_features(encode, source, batch_size=128, cache_path=path, cache_key='run2')
  assert len(shapes) == 2 * calls  # another key: recomputed (and the cache rewritten)
  with np.load(path) as stored:
    assert str(stored['cache_key']) == 'run2'

  class Shorter:  # the same key but another row count: recomputed
    def __len__(self):
      return 100

    def __getitem__(self, i):
      return source[i]
  x_short, _ = features.extract_features(encode, Shorter(), batch_size=128, cache_path=path,
                                         cache_key='run2')
  assert len(shapes) == 2 * calls + 1 and x_short.shape == (100, 5)

  with open(path, 'wb') as f:
    f.write(b'not a zip')
  x2, _ = features.extract_features(encode, source, batch_size=128, cache_path=path,
                                    cache_key='run2')
  assert len(shapes) == 3 * calls + 1  # corrupt: recomputed with a warning, not an error
  np.testing.assert_array_equal(x2, x)
  features.extract_features(encode, source, batch_size=128, cache_path=path, cache_key='run2')
  assert len(shapes) == 3 * calls + 1  # the rewritten cache is valid again


def test_extract_features_rejects_bad_arguments():
  source = DigitsSource('test')
  encode, _ = _counting_encoder()
  with pytest.raises(ValueError, match='batch_size'):
    features.extract_features(encode, source, batch_size=0)
  with pytest.raises(ValueError, match=r'\[batch, d\]'):
    features.extract_features(lambda images: np.zeros((3, 4)), source, batch_size=64)


# ------------------------------------------------------------------------------------------------
# make_encode_fn


_apply = nnx.jit(lambda module, x: module(x))  # one compilation instead of op-by-op dispatch


@pytest.fixture(scope='module')
def tiny_backbone():
  """A fresh ``resnet_tiny`` (built once per module: eager initialisation is slow on CPU)."""
  backbone = resnet_tiny(rngs=nnx.Rngs(0))
  return lambda: nnx.clone(backbone)


@pytest.fixture(scope='module')
def bn_backbone(tiny_backbone):
  """A tiny ResNet whose BatchNorm running statistics moved towards those of the digits."""
  backbone = tiny_backbone()
  backbone.train()
  source = DigitsSource('train')
  images = np.stack([source[i]['image'] for i in range(64)])
  x = augment.eval_transform(images, size=16, mean=DIGITS_MEAN, std=DIGITS_STD)
  for _ in range(10):
    _apply(backbone, x)  # updates the running statistics
  return lambda: nnx.clone(backbone)


def test_make_encode_fn_uses_running_statistics_and_leaves_state_alone(bn_backbone):
  backbone = bn_backbone()
  graphdef, state = nnx.split(backbone)
  before = _leaves(state)
  encode = features.make_encode_fn(graphdef, state, image_size=16, mean=DIGITS_MEAN,
                                   std=DIGITS_STD)
  images = np.stack([DigitsSource('test')[i]['image'] for i in range(8)])
  out = np.asarray(encode(images))
  assert out.shape == (8, backbone.feature_dim) and out.dtype == np.float32
  # Image 0 with other companions: the same features (train-mode BN would mix the batch).
  other = np.concatenate([images[:1], np.flip(images[1:], axis=1) // 2])
  np.testing.assert_allclose(np.asarray(encode(other))[0], out[0], rtol=1e-5, atol=1e-5)
  # The reference: the module itself in eval mode.
  reference = nnx.clone(backbone)
  reference.eval()
  x = augment.eval_transform(images, size=16, mean=DIGITS_MEAN, std=DIGITS_STD)
  np.testing.assert_allclose(out, np.asarray(_apply(reference, x)), rtol=1e-5, atol=1e-5)
  _assert_same_leaves(before, _leaves(state))
  _assert_same_leaves(before, _leaves(backbone))
  assert not backbone.stem_norm.use_running_average  # the caller's module keeps its mode


def test_make_encode_fn_picks_the_feature_of_an_encoder():
  config = default_model_config('resnet_tiny', projector_hidden_dim=32, projection_dim=8)
  encoder = build_encoder(config, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(encoder)
  images = np.stack([DigitsSource('test')[i]['image'] for i in range(4)])
  kwargs = dict(image_size=16, mean=DIGITS_MEAN, std=DIGITS_STD, crop_fraction=0.75)
  h = features.make_encode_fn(graphdef, state, **kwargs)(images)
  z = features.make_encode_fn(graphdef, state, feature='z', **kwargs)(images)
  assert h.shape == (4, encoder.feature_dim) and z.shape == (4, 8)
  encoder.eval()
  out = _apply(encoder, augment.eval_transform(images, size=16, mean=DIGITS_MEAN,
                                               std=DIGITS_STD, crop_fraction=0.75))
  np.testing.assert_allclose(np.asarray(h), np.asarray(out['h']), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(z), np.asarray(out['z']), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# finetune


@pytest.fixture(scope='module')
def digits16():
  return DigitsSource('train', image_size=16), DigitsSource('test', image_size=16)


def _finetune_config(**overrides):
  config = finetune.default_finetune_config()
  config.image_size, config.mean, config.std = 16, DIGITS_MEAN, DIGITS_STD
  config.update(dict(epochs=3, batch_size=64, learning_rate=0.2, crop_scale=(0.5, 1.0),
                     flip_prob=0.0, log_every=20))
  config.update(overrides)
  return config


def test_finetune_learns_digits_and_leaves_the_callers_module_alone(digits16, tiny_backbone):
  train, test = digits16
  backbone = tiny_backbone()
  before = _leaves(backbone)
  result = finetune.finetune(backbone, train, test, num_classes=10, config=_finetune_config())
  assert set(result) == {'top1', 'top5', 'train_loss', 'epochs', 'steps'}
  assert result['top1'] > 0.6, result  # chance is 0.1
  assert result['top5'] >= result['top1'] and result['train_loss'] < np.log(10)
  assert result['epochs'] == 3 and result['steps'] == 3 * (len(train) // 64)
  _assert_same_leaves(before, _leaves(backbone))
  assert not backbone.stem_norm.use_running_average


def test_finetune_with_frozen_backbone_trains_only_the_head(digits16, bn_backbone):
  train, test = digits16
  backbone = bn_backbone()
  before = _leaves(backbone)
  config = _finetune_config(freeze_backbone=True, epochs=2, learning_rate=0.5)
  classifier, info = finetune.train_classifier(backbone, train, num_classes=10, config=config)
  # Parameters and BatchNorm statistics of the backbone: unchanged; the head: trained.
  _assert_same_leaves(before, _leaves(classifier.backbone))
  _assert_same_leaves(before, _leaves(backbone))
  assert np.abs(np.asarray(classifier.head.kernel[...])).sum() > 0
  assert np.isfinite(info['train_loss']) and info['steps'] == 2 * (len(train) // 64)
  logits, labels = finetune.classifier_logits(classifier, test, image_size=16,
                                              mean=DIGITS_MEAN, std=DIGITS_STD, batch_size=128)
  assert logits.shape == (len(test), 10)
  assert linear_probe.topk_accuracy(logits, labels, 1) > 0.25  # chance is 0.1


def test_finetune_rejects_bad_config(digits16, tiny_backbone):
  train, test = digits16
  backbone = tiny_backbone()
  with pytest.raises(ValueError, match='epochs'):
    finetune.finetune(backbone, train, test, num_classes=10, config=_finetune_config(epochs=0))
  with pytest.raises(ValueError, match='learning_rate'):
    finetune.finetune(backbone, train, test, num_classes=10,
                      config=_finetune_config(learning_rate=-1.0))
  with pytest.raises(ValueError, match='num_classes'):
    finetune.finetune(backbone, train, test, num_classes=1, config=_finetune_config())
  with pytest.raises(ValueError, match=r'config\.batch_size must be an int >= 1'):
    finetune.finetune(backbone, train, test, num_classes=10, config=_finetune_config(batch_size=0))


# ------------------------------------------------------------------------------------------------
# report


def _context(train, test, **kwargs):
  """A context whose split features are given (the evaluators of features need nothing else)."""
  defaults = dict(eval_graphdef=None, params=None, batch_stats=None, transform={}, augment=None,
                  train_source=None, test_source=None, num_classes=4)
  defaults.update(kwargs)
  return common.Context(**defaults, _features={'train': train, 'test': test})


def test_feature_evaluators_keys_and_values():
  x, y = _blobs(300)
  eval_config = evaluate.default_eval_config(DigitsInfo)
  eval_config.linear.epochs = 10
  results = evaluate.evaluate(_context((x[:150], y[:150]), (x[150:], y[150:])),
                              ('linear', 'knn', 'geometry'), eval_config)
  assert list(results) == ['linear/top1', 'linear/top5', 'knn/k20', 'knn/k200',
                           'geometry/compactness', 'geometry/separability_mean',
                           'geometry/separability_min', 'geometry/ratio']
  assert all(type(v) is float for v in results.values())  # pylint: disable=unidiomatic-typecheck
  assert results['linear/top1'] > 0.95 and results['knn/k20'] > 0.95
  assert 0 < results['knn/k200'] <= 1  # k = 200 clipped to the 150 training rows
  assert results['geometry/ratio'] < 0.5  # tight, well-separated blobs
  with pytest.raises(ValueError, match='unknown evaluator'):
    evaluate.evaluate(_context((x, y), (x, y)), ('magic',), eval_config)


def test_every_evaluator_has_its_settings_in_the_eval_config():
  eval_config = evaluate.default_eval_config(DigitsInfo)
  for name in ('linear', 'knn', 'alignment', 'finetune'):
    assert name in evaluate.EVALUATORS and name in eval_config
  assert 'geometry' in evaluate.EVALUATORS  # no settings


def test_feature_cache_is_keyed_by_the_encoder_and_the_data(tmp_path):
  """Two encoders (or two data sets) in one cache directory never share features."""
  source = DigitsSource('test', image_size=16)
  encoders = [build_encoder(default_model_config('resnet_tiny', projector_layers=0),
                            rngs=nnx.Rngs(seed)) for seed in (0, 1)]

  def context(encoder, data_key='digits'):
    encoder.eval()
    graphdef, params, batch_stats = nnx.split(encoder, nnx.Param, nnx.BatchStat)
    return common.Context(eval_graphdef=graphdef, params=params, batch_stats=batch_stats,
                          transform=dict(image_size=16, mean=DIGITS_MEAN, std=DIGITS_STD,
                                         crop_fraction=1.0),
                          augment=None, train_source=source, test_source=source,
                          num_classes=10, cache_dir=str(tmp_path), data_key=data_key)
  first = context(encoders[0]).features('test')[0]
  second = context(encoders[1]).features('test')[0]
  assert not np.allclose(first, second)  # not the first encoder's cached features
  np.testing.assert_array_equal(context(encoders[0]).features('test')[0], first)  # reused
  assert len(os.listdir(tmp_path)) == 2
  context(encoders[0], data_key='other data').features('test')
  assert len(os.listdir(tmp_path)) == 3


def test_format_table():
  table = report.format_table({'random init': {'knn/k20': 0.1, 'steps': 3,
                                               'finetune/epochs': 2.0},
                               'pretrained': {'knn/k20': 0.9, 'x': 1.0,
                                              'prototype_bias/num_images': 450.0}})
  lines = table.splitlines()
  assert lines[0].split() == ['metric', 'better', 'random', 'init', 'pretrained']
  assert set(lines[1]) == {'-', ' '}
  assert lines[2].split() == ['knn/k20', 'higher', '0.1000', '0.9000']
  assert lines[3].split() == ['steps', '3', '-']  # counts as counts, no direction
  assert lines[4].split() == ['finetune/epochs', '2', '-']
  assert lines[5].split() == ['x', '-', '1.0000']
  assert lines[6].split() == ['prototype_bias/num_images', '-', '450']
  assert len(lines) == 7
  assert [report.better(n) for n in ('linear/top1', 'geometry/ratio', 'alignment/uniformity',
                                     'geometry/separability_min')] == [
                                         'higher', 'lower', 'lower', 'higher']
  # Right-aligned columns: every value ends where its header ends.
  assert len({len(line) for line in lines[:3]}) == 1
  assert lines[5].endswith('1.0000') and len(lines[5]) == len(lines[6])


# ------------------------------------------------------------------------------------------------
# The raw-pixel column


def test_raw_pixels_are_the_transformed_image_and_every_evaluator_runs_on_them(tmp_path):
  from glf_jax.data import recipes  # pylint: disable=g-import-not-at-top
  source = DigitsSource('test', image_size=16)
  encoder = build_encoder(default_model_config('resnet_tiny', projector_layers=0),
                          rngs=nnx.Rngs(0))
  encoder.eval()
  graphdef, params, batch_stats = nnx.split(encoder, nnx.Param, nnx.BatchStat)
  transform = dict(image_size=16, mean=DIGITS_MEAN, std=DIGITS_STD, crop_fraction=1.0)
  context = common.Context(eval_graphdef=graphdef, params=params, batch_stats=batch_stats,
                           transform=transform, augment=recipes.simclr_config(16),
                           train_source=source, test_source=source, num_classes=10, batch_size=128,
                           cache_dir=str(tmp_path))
  pixels = evaluate.raw_pixels_context(context)
  images = np.stack([source[i]['image'] for i in range(len(source))])
  expected = np.asarray(augment.eval_transform(images, size=16, mean=DIGITS_MEAN,
                                               std=DIGITS_STD)).reshape(len(source), -1)
  features, labels = pixels.features('test')
  np.testing.assert_allclose(features, expected, atol=1e-6)
  assert features.shape == (450, 16 * 16 * 3) and labels.shape == (450,)
  # Its own cache entry, never the encoder's (nor the other way round).
  assert context.features('test')[0].shape[1] != features.shape[1]
  assert len(os.listdir(tmp_path)) == 2
  eval_config = evaluate.default_eval_config(DigitsInfo)
  assert eval_config.compare_raw_pixels  # small images: on by default
  assert not evaluate.default_eval_config(dataset_info('imagenet100')).compare_raw_pixels
  eval_config.linear.epochs, eval_config.finetune.epochs = 5, 1
  eval_config.prototype_bias.examples = 40
  results = evaluate.evaluate(pixels, ('linear', 'knn', 'geometry', 'alignment', 'finetune',
                                       'prototype_bias'), eval_config)
  assert results['linear/top1'] > 0.8 and results['knn/k20'] > 0.9  # digits' pixels say a lot
  assert np.isfinite(results['alignment/uniformity']) and results['finetune/top1'] > 0.1
  # ImageNet-size inputs are resized down to at most 32 px (3072 values per image).
  large = evaluate.raw_pixels_context(dataclasses.replace(
      context, transform={**transform, 'image_size': 224}, cache_dir=None, _features={}))
  assert large.transform['image_size'] == 32 and context.transform['image_size'] == 16
  assert large.features('test')[0].shape == (450, 32 * 32 * 3)
