"""The ``prototype_bias`` evaluator (arXiv 2510.10572 §5, docs/maths.md §4) on a tiny random encoder."""

from flax import nnx
import jax
import ml_collections
import numpy as np
import pytest

from glf_jax import evaluate
from glf_jax.data import DigitsSource
from glf_jax.data import recipes
from glf_jax.data.datasets import dataset_info
from glf_jax.evaluate import common
from glf_jax.evaluate.prototype_bias import augmented_features
from glf_jax.models import build_encoder, default_model_config

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.5, 0.2)


def _recipe(random: bool) -> ml_collections.ConfigDict:
  """The quickstart's digits view (random) or the same with no randomness at all."""
  view = recipes.simclr_view_config(16, mean=MEAN, std=STD, family='cifar')
  view.crop_scale, view.flip_prob, view.hue = (0.5, 1.0), 0.0, 0.0
  view.noise_prob = 1.0
  if not random:
    view.crop_scale, view.crop_ratio = (1.0, 1.0), (1.0, 1.0)
    for name in ('flip_prob', 'rotation_prob', 'jitter_prob', 'grayscale_prob', 'blur_prob',
                 'solarize_prob', 'cutout_prob', 'noise_prob'):
      view[name] = 0.0
  return view


@pytest.fixture(scope='module')
def encoder():
  model = build_encoder(default_model_config('resnet_tiny', projector_layers=0),
                        rngs=nnx.Rngs(0))
  model.eval()
  return model


class _Images:
  """A source of given images and labels."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels
    self.num_classes = int(labels.max()) + 1

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {'image': self.images[i], 'label': np.int32(self.labels[i])}


def _context(encoder, source, recipe, seed=0, batch_size=48):
  graphdef, params, batch_stats = nnx.split(encoder, nnx.Param, nnx.BatchStat)
  return common.Context(eval_graphdef=graphdef, params=params, batch_stats=batch_stats,
                        transform=dict(image_size=16, mean=MEAN, std=STD, crop_fraction=1.0),
                        augment=ml_collections.ConfigDict(
                            dict(view1=recipe, view2=_recipe(random=True))),
                        train_source=None, test_source=source,
                        num_classes=source.num_classes, seed=seed, batch_size=batch_size)


def _bias(encoder, source, recipe, k, n, **kwargs):
  settings = ml_collections.ConfigDict(dict(augmentations=k, examples=n, view='view1'))
  return evaluate.EVALUATORS['prototype_bias'](_context(encoder, source, recipe, **kwargs),
                                               settings)


def _digits(n):
  source = DigitsSource('test', image_size=16)
  return _Images(np.stack([source[i]['image'] for i in range(n)]),
                 np.array([int(source[i]['label']) for i in range(n)]))


def _clean_features(encoder, source) -> np.ndarray:
  """``h`` of the images under the evaluation transform (the crop of a whole image to its own
  size is the image), by hand, float64."""
  x = (source.images.astype(np.float32) / 255.0 - np.array(MEAN)) / np.array(STD)
  return np.asarray(encoder(x.astype(np.float32))['h'], np.float64)


def _unit(a):
  return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _distance_to_class_centres(points, centred, labels) -> float:
  """mean_i |points_i - mean_{j: labels_j = labels_i} centred_j|, by a loop."""
  centres = {y: centred[labels == y].mean(0) for y in np.unique(labels)}
  return float(np.mean([np.linalg.norm(points[i] - centres[y]) for i, y in enumerate(labels)]))


def test_registered_with_settings_and_not_run_by_default():
  assert 'prototype_bias' in evaluate.EVALUATORS
  eval_config = evaluate.default_eval_config(dataset_info('digits'))
  assert eval_config.prototype_bias.to_dict() == dict(augmentations=8, examples=512,
                                                     view='view1', variants='')
  assert 'prototype_bias' not in eval_config.evaluators  # K forward passes per image


def test_random_encoder_gives_finite_raw_and_normalised_bias(encoder):
  source = _digits(30)
  results = _bias(encoder, source, _recipe(random=True), k=3, n=30)
  assert set(results) == {'prototype_bias/raw', 'prototype_bias/normalized',
                          'prototype_bias/raw_clean', 'prototype_bias/normalized_clean',
                          'prototype_bias/surrogate_norm', 'prototype_bias/num_augmentations',
                          'prototype_bias/num_images'}
  assert 0 < results['prototype_bias/surrogate_norm'] < 1  # random views disagree
  raw, normalized = results['prototype_bias/raw'], results['prototype_bias/normalized']
  assert np.isfinite(raw) and np.isfinite(normalized) and raw > 0 and normalized > 0
  assert abs(raw - normalized) > 1e-3 * max(raw, normalized)
  assert normalized < 2.0  # distances between means of unit vectors
  assert results['prototype_bias/num_augmentations'] == 3
  assert results['prototype_bias/num_images'] == 30
  # Seeded: the same views again; another seed, other views.
  assert _bias(encoder, source, _recipe(random=True), k=3, n=30) == results
  assert _bias(encoder, source, _recipe(random=True), k=3, n=30, seed=1) != results


def test_without_randomness_the_bias_is_the_spread_of_the_images_features(encoder):
  """Every view of x is x itself, so m_x = f(x) for any K: the bias is mean_x |f(x) - mu_y|."""
  source = _digits(24)
  recipe = _recipe(random=False)
  one = _bias(encoder, source, recipe, k=1, n=24)
  four = _bias(encoder, source, recipe, k=4, n=24, batch_size=20)  # chunks of 5, last padded
  for key in ('prototype_bias/raw', 'prototype_bias/normalized'):
    np.testing.assert_allclose(four[key], one[key], rtol=1e-5)
  # By hand: f on the normalised images themselves (the crop of the whole image to its own size
  # is the image).
  h = _clean_features(encoder, source)
  for key, f in (('prototype_bias/raw', h), ('prototype_bias/normalized', _unit(h))):
    np.testing.assert_allclose(one[key], _distance_to_class_centres(f, f, source.labels),
                               rtol=1e-4)
    # The clean images' features are the views' here, so both readings agree.
    np.testing.assert_allclose(one[f'{key}_clean'], one[key], rtol=1e-4)
  # Every view of an image is the image: each surrogate is one unit vector.
  np.testing.assert_allclose(four['prototype_bias/surrogate_norm'], 1.0, rtol=1e-5)


def test_clean_prototypes_are_the_class_means_of_the_probe_features(encoder):
  """``..._clean``: the surrogates against the class means of the evaluation transform's features
  of the same images (what the probe sees), by hand."""
  source = _digits(24)
  recipe = _recipe(random=True)
  context = _context(encoder, source, recipe)
  results = evaluate.EVALUATORS['prototype_bias'](context, ml_collections.ConfigDict(
      dict(augmentations=3, examples=24, view='view1')))
  views = augmented_features(context, source.images, recipe, num_augmentations=3,
                             key=jax.random.key(11))
  clean = _clean_features(encoder, source)
  for key, v, c in (('prototype_bias/raw_clean', views, clean),
                    ('prototype_bias/normalized_clean', _unit(views), _unit(clean))):
    m = v.astype(np.float64).mean(1)
    np.testing.assert_allclose(results[key], _distance_to_class_centres(m, c, source.labels),
                               rtol=1e-4)
  assert results['prototype_bias/normalized_clean'] != results['prototype_bias/normalized']


def test_identical_images_have_bias_only_from_augmentation(encoder):
  """Every image of a class is one picture: no randomness, no bias; random views leave a bias
  that the mean over more views shrinks (|m_x - mu_y| ~ 1/sqrt(K))."""
  pictures = _digits(2).images
  labels = np.repeat([0, 1], 8)
  source = _Images(pictures[labels], labels)
  still = _bias(encoder, source, _recipe(random=False), k=2, n=16)
  assert still['prototype_bias/raw'] < 1e-5 and still['prototype_bias/normalized'] < 1e-6
  few = _bias(encoder, source, _recipe(random=True), k=1, n=16)
  many = _bias(encoder, source, _recipe(random=True), k=16, n=16)
  for key in ('prototype_bias/raw', 'prototype_bias/normalized'):
    assert many[key] > 0
    assert many[key] < 0.6 * few[key], (key, few[key], many[key])  # 1/sqrt(16) = 0.25 expected


def test_variants_measure_one_encoder_under_other_views(encoder):
  """The fixed-encoder control: the same encoder under the run's recipe and its variants; a
  variant that changes nothing gives the run's own numbers."""
  source = _digits(24)
  settings = ml_collections.ConfigDict(dict(
      augmentations=2, examples=24, view='view1',
      variants='{"same": {}, "cutout": {"cutout_prob": 1.0, "cutout_size": 0.5}}'))
  results = evaluate.EVALUATORS['prototype_bias'](
      _context(encoder, source, _recipe(random=False)), settings)
  for kind in ('raw', 'normalized'):
    assert results[f'prototype_bias/same/{kind}'] == results[f'prototype_bias/{kind}']
    assert results[f'prototype_bias/cutout/{kind}'] != results[f'prototype_bias/{kind}']
  # Views that differ (cutout at random places) shorten the surrogates; identical views do not.
  assert results['prototype_bias/same/surrogate_norm'] == results['prototype_bias/surrogate_norm']
  assert results['prototype_bias/surrogate_norm'] == pytest.approx(1.0, rel=1e-5)
  assert results['prototype_bias/cutout/surrogate_norm'] < 0.999
  settings.variants = '{"typo": {"cutout_prb": 1.0}}'
  with pytest.raises(ValueError, match=r"variants\['typo'\]: the view has no field 'cutout_prb'"):
    evaluate.EVALUATORS['prototype_bias'](_context(encoder, source, _recipe(random=False)),
                                          settings)


@pytest.mark.parametrize('field, value, message', [
    ('augmentations', 0, r'eval\.prototype_bias\.augmentations must be an int >= 1, got 0'),
    ('examples', 1.5, r'eval\.prototype_bias\.examples must be an int >= 1, got 1\.5'),
    ('view', 'view3', r"eval\.prototype_bias\.view must be one of \['view1', 'view2'\]"),
])
def test_bad_settings_name_the_field(encoder, field, value, message):
  settings = ml_collections.ConfigDict({**dict(augmentations=2, examples=4, view='view1'),
                                        field: value})
  context = _context(encoder, _digits(4), _recipe(random=False))
  with pytest.raises(ValueError, match=message):
    evaluate.EVALUATORS['prototype_bias'](context, settings)
