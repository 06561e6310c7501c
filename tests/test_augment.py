"""Tests of glf_jax.data.augment, .transforms and .recipes: shapes, keys, probabilities,
identities, crop boxes, colour maths, recipes and their validation.

Colour ops are checked against float64 NumPy references written here (``colorsys`` for HSV).
The transforms are deterministic: where an op is random in a view, the tests draw its parameters
(uniforms, centres) from a key themselves. Images are small (8–24 px) and every batched call is
jitted, to keep the file fast on CPU.
"""

import colorsys
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax.data import augment as aug
from glf_jax.data import datasets
from glf_jax.data import recipes
from glf_jax.data import transforms as tf

ALL_PROBS = ('flip_prob', 'rotation_prob', 'jitter_prob', 'grayscale_prob', 'blur_prob',
             'solarize_prob', 'cutout_prob', 'noise_prob')


def plain_view(size, **overrides):
  """A view recipe that is the identity: full-image crop at the input size, nothing random."""
  config = aug.simclr_view_config(size)
  for name in ALL_PROBS:
    config[name] = 0.0
  config.crop_scale = (1.0, 1.0)
  config.crop_ratio = (1.0, 1.0)
  config.mean = (0.0, 0.0, 0.0)
  config.std = (1.0, 1.0, 1.0)
  config.update(overrides)
  return config


def jitted_batch(view_config):
  return jax.jit(lambda key, images: aug.augment_batch(key, images, view_config))


@functools.lru_cache(maxsize=None)
def simclr_cifar_batch():
  """One jitted SimCLR CIFAR view at 16 px, shared by the tests (one compile per input type)."""
  return jitted_batch(aug.simclr_view_config(16))


@pytest.fixture(scope='module')
def uint8_images():
  return np.random.RandomState(0).randint(0, 256, size=(6, 20, 24, 3)).astype(np.uint8)


@pytest.fixture(scope='module')
def float_image():
  """One 9x11 RGB image in [0, 1] with gray, black, white, pure and tied-maximum pixels."""
  image = np.random.RandomState(1).uniform(0.0, 1.0, size=(9, 11, 3))
  image[0, 0] = (0.3, 0.3, 0.3)
  image[0, 1] = (0.0, 0.0, 0.0)
  image[0, 2] = (1.0, 1.0, 1.0)
  image[0, 3] = (1.0, 0.0, 0.0)
  image[0, 4] = (0.0, 1.0, 0.0)
  image[0, 5] = (0.0, 0.0, 1.0)
  image[0, 6] = (0.7, 0.7, 0.2)
  image[0, 7] = (0.2, 0.7, 0.7)
  image[0, 8] = (0.7, 0.2, 0.7)
  return image.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Shapes, dtypes, ranges, keys.


def test_two_views_shapes_dtypes_and_ranges(uint8_images):
  config = aug.byol_config(16)  # every op of the recipe: crop, flip, jitter, gray, blur, solarize
  views = jax.jit(lambda k, x: aug.two_views(k, x, config))(jax.random.key(0), uint8_images)
  for view, view_config in zip(views, (config.view1, config.view2)):
    assert view.shape == (6, 16, 16, 3) and view.dtype == jnp.float32
    unnormalised = np.asarray(view) * np.asarray(view_config.std) + np.asarray(view_config.mean)
    assert unnormalised.min() >= -1e-5 and unnormalised.max() <= 1 + 1e-5


def test_values_in_unit_interval_before_normalise(uint8_images):
  config = aug.simclr_view_config(12, dataset='imagenet2012')
  for name in ('rotation_prob', 'cutout_prob', 'noise_prob', 'solarize_prob'):
    config[name] = 0.5
  config.mean, config.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
  out = jitted_batch(config)(jax.random.key(1), uint8_images)
  assert out.shape == (6, 12, 12, 3)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_single_channel_input_is_repeated_to_rgb(uint8_images):
  gray_input = uint8_images[:2, :8, :8, :1]
  out = jitted_batch(plain_view(8))(jax.random.key(1), gray_input)
  np.testing.assert_allclose(out, np.repeat(gray_input / 255.0, 3, axis=-1), atol=1e-6)
  with pytest.raises(ValueError, match='channels'):
    aug.augment_batch(jax.random.key(0), uint8_images[..., :2], plain_view(8))


def test_uint8_and_float_inputs_give_the_same_views(uint8_images):
  fn = simclr_cifar_batch()
  from_uint8 = fn(jax.random.key(3), uint8_images)
  from_float = fn(jax.random.key(3), uint8_images.astype(np.float32) / 255.0)
  # Equal up to float32 rounding (XLA fuses the /255 differently): far below 1/255.
  np.testing.assert_allclose(from_uint8, from_float, atol=1e-5)


def test_keys_determine_the_views(uint8_images):
  config = aug.simclr_config(16)
  fn = jax.jit(lambda k, x: aug.two_views(k, x, config))
  v1, v2 = fn(jax.random.key(7), uint8_images)
  w1, w2 = fn(jax.random.key(7), uint8_images)
  np.testing.assert_array_equal(v1, w1)
  np.testing.assert_array_equal(v2, w2)
  u1, _ = fn(jax.random.key(8), uint8_images)
  assert np.all(np.abs(np.asarray(u1) - np.asarray(v1)).reshape(6, -1).max(axis=1) > 1e-3)
  # The two views use independent keys.
  assert np.all(np.abs(np.asarray(v1) - np.asarray(v2)).reshape(6, -1).max(axis=1) > 1e-3)
  # The shared-recipe fast path equals augment_batch with the split keys.
  key1, key2 = jax.random.split(jax.random.key(7))
  batch_fn = simclr_cifar_batch()
  assert config.view1 == aug.simclr_view_config(16)
  np.testing.assert_allclose(batch_fn(key1, uint8_images), v1, atol=1e-5)
  np.testing.assert_allclose(batch_fn(key2, uint8_images), v2, atol=1e-5)
  # Raw uint32 keys work too.
  raw = fn(jax.random.PRNGKey(7), uint8_images)[0]
  assert raw.shape == v1.shape


def test_per_example_keys_differ_across_the_batch(uint8_images):
  same_image = np.repeat(uint8_images[:1], 6, axis=0)
  out = np.asarray(simclr_cifar_batch()(jax.random.key(0), same_image))
  flat = out.reshape(6, -1)
  for i, j in itertools.combinations(range(6), 2):
    assert np.abs(flat[i] - flat[j]).max() > 1e-3


# ------------------------------------------------------------------------------------------------
# Probabilities.


@pytest.mark.parametrize('field, probability, overrides', [
    ('flip_prob', 0.5, {}),
    ('grayscale_prob', 0.2, {}),
    ('solarize_prob', 0.2, {}),
    ('blur_prob', 0.5, {'blur_sigma': (1.0, 2.0)}),
    ('jitter_prob', 0.8, {'brightness': 0.5, 'contrast': 0.0, 'saturation': 0.0, 'hue': 0.0}),
    ('rotation_prob', 0.3, {}),
    ('cutout_prob', 0.3, {}),
    ('noise_prob', 0.3, {'noise_std': 0.1}),
])
def test_each_probability_is_honoured(field, probability, overrides):
  num = 2000
  image = np.random.RandomState(2).uniform(0.2, 0.8, size=(8, 8, 3)).astype(np.float32)
  config = plain_view(8, **{field: probability}, **overrides)
  out = np.asarray(jitted_batch(config)(jax.random.key(11), np.broadcast_to(image, (num, 8, 8, 3))))
  changed = np.abs(out - image).reshape(num, -1).max(axis=1) > 1e-4
  assert abs(changed.mean() - probability) < 0.05, (field, changed.mean())
  if field == 'flip_prob':
    np.testing.assert_array_equal(out[changed], np.broadcast_to(image[:, ::-1], out[changed].shape))
  if field == 'grayscale_prob':
    assert np.allclose(out[changed][..., 0], out[changed][..., 2], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Zero strength is the identity.


def test_zero_strength_transforms_are_the_identity(float_image):
  key = jax.random.key(5)
  crop_u, jitter_u, center_u = jax.random.split(key, 3)
  crop_uniforms = jax.random.uniform(crop_u, (tf.num_crop_uniforms(10),))
  jitter_uniforms = jax.random.uniform(jitter_u, (tf.NUM_JITTER_UNIFORMS,))
  center_y, center_x = (tf.uniform_int(u, 9) for u in jax.random.uniform(center_u, (2,)))
  x = jnp.asarray(float_image[:9, :9])  # square, for the crop
  cases = {
      'crop': lambda x: tf.crop_and_resize(
          x, tf.crop_box_from_uniforms(crop_uniforms, 9, 9, scale=(1.0, 1.0), ratio=(1.0, 1.0)),
          9),
      'jitter': lambda x: tf.color_jitter_from_uniforms(jitter_uniforms, x, brightness=0.0,
                                                        contrast=0.0, saturation=0.0, hue=0.0),
      'brightness': lambda x: tf.adjust_brightness(x, 1.0),
      'contrast': lambda x: tf.adjust_contrast(x, 1.0),
      'saturation': lambda x: tf.adjust_saturation(x, 1.0),
      'hue': lambda x: tf.adjust_hue(x, 0.0),
      'blur': lambda x: tf.blur_with_sigma(x, 1e-6, 5),
      'rotate': lambda x: tf.rotate(x, 0.0),
      'noise': lambda x: tf.gaussian_noise(key, x, std=0.0),
      'cutout': lambda x: tf.cutout_at(x, center_y, center_x, size=0.0),
      'solarize': lambda x: tf.solarize(x, threshold=1.01),
      'view': lambda x: aug.augment_view(key, x, plain_view(9)),
      'eval': lambda x: aug.eval_transform(x[None], size=9, mean=(0., 0., 0.),
                                           std=(1., 1., 1.))[0],
  }
  for name, transform in cases.items():
    np.testing.assert_allclose(jax.jit(transform)(x), x, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------------------------------------
# Crop boxes.


def sample_crop_box(key, height, width, **kwargs):
  """A random crop box, as a view draws it: ``crop_box_from_uniforms`` of fresh uniforms."""
  uniforms = jax.random.uniform(key, (tf.num_crop_uniforms(10),))
  return tf.crop_box_from_uniforms(uniforms, height, width, **kwargs)


@pytest.mark.parametrize('height, width, scale, ratio', [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),
    (20, 50, (0.08, 1.0), (3 / 4, 4 / 3)),
    (7, 5, (0.01, 1.0), (0.01, 100.0)),
    (50, 20, (0.5, 2.0), (0.1, 10.0)),
    (16, 16, (0.9, 1.0), (10.0, 20.0)),     # never fits: torchvision's central fallback
    (16, 16, (0.001, 0.002), (1e3, 1e4)),   # degenerate: fallback clamps sides to >= 1 pixel
])
def test_crop_boxes_stay_inside_the_image(height, width, scale, ratio):
  keys = jax.random.split(jax.random.key(0), 2000)
  boxes = jax.jit(jax.vmap(lambda k: sample_crop_box(k, height, width, scale=scale,
                                                     ratio=ratio)))(keys)
  top, left, crop_height, crop_width = np.asarray(boxes).T
  assert boxes.dtype == jnp.int32
  assert np.all(top >= 0) and np.all(left >= 0)
  assert np.all(crop_height >= 1) and np.all(crop_width >= 1)
  assert np.all(top + crop_height <= height) and np.all(left + crop_width <= width)
  if scale == (0.9, 1.0):
    np.testing.assert_array_equal(boxes, np.broadcast_to([7, 0, 2, 16], boxes.shape))


def test_crop_box_distribution():
  keys = jax.random.split(jax.random.key(1), 2000)
  sample = jax.jit(jax.vmap(lambda k: sample_crop_box(k, 32, 32, scale=(0.25, 0.25),
                                                      ratio=(1.0, 1.0))))
  top, left, crop_height, crop_width = np.asarray(sample(keys)).T
  assert np.all(crop_height == 16) and np.all(crop_width == 16)
  assert set(top) == set(range(17)) and set(left) == set(range(17))  # every position reachable
  default = jax.jit(jax.vmap(lambda k: sample_crop_box(k, 64, 64)))(keys)
  area = np.asarray(default[:, 2] * default[:, 3]) / 64**2
  aspect = np.asarray(default[:, 3] / default[:, 2])
  assert 0.45 < area.mean() < 0.62 and area.min() >= 0.06
  assert aspect.min() > 0.6 and aspect.max() < 1.6


def test_crop_and_resize_matches_slicing_for_an_integer_box(float_image):
  x = jnp.asarray(float_image)
  out = jax.jit(tf.crop_and_resize, static_argnums=2)(x, jnp.asarray([2, 3, 6, 6]), 6)
  np.testing.assert_allclose(out, float_image[2:8, 3:9], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Colour ops against float64 NumPy references.


def np_gray(image):
  return image @ np.array(tf.LUMA_WEIGHTS)


def np_brightness(image, factor):
  return np.clip(factor * image, 0, 1)


def np_contrast(image, factor):
  return np.clip(factor * image + (1 - factor) * np_gray(image).mean(), 0, 1)


def np_saturation(image, factor):
  return np.clip(factor * image + (1 - factor) * np_gray(image)[..., None], 0, 1)


def np_hue(image, delta):
  out = np.empty_like(image)
  for index in np.ndindex(image.shape[:-1]):
    hue, saturation, value = colorsys.rgb_to_hsv(*image[index])
    out[index] = colorsys.hsv_to_rgb((hue + delta) % 1.0, saturation, value)
  return np.clip(out, 0, 1)


@pytest.mark.parametrize('factor', [0.0, 0.4, 1.0, 1.7])
def test_brightness_contrast_saturation_match_numpy(float_image, factor):
  x64 = float_image.astype(np.float64)
  np.testing.assert_allclose(tf.adjust_brightness(float_image, factor),
                             np_brightness(x64, factor), atol=1e-5)
  np.testing.assert_allclose(tf.adjust_contrast(float_image, factor),
                             np_contrast(x64, factor), atol=1e-5)
  np.testing.assert_allclose(tf.adjust_saturation(float_image, factor),
                             np_saturation(x64, factor), atol=1e-5)


def test_rgb_hsv_match_colorsys_and_round_trip(float_image):
  hsv = np.asarray(tf.rgb_to_hsv(float_image))
  reference = np.array([colorsys.rgb_to_hsv(*p) for p in float_image.reshape(-1, 3).astype(float)])
  hue_gap = np.abs(hsv.reshape(-1, 3)[:, 0] - reference[:, 0])
  assert np.all(np.minimum(hue_gap, 1 - hue_gap) < 1e-5)
  np.testing.assert_allclose(hsv.reshape(-1, 3)[:, 1:], reference[:, 1:], atol=1e-5)
  rgb = np.asarray(tf.hsv_to_rgb(reference.reshape(float_image.shape).astype(np.float32)))
  reference_rgb = np.array([colorsys.hsv_to_rgb(*p) for p in reference])
  np.testing.assert_allclose(rgb.reshape(-1, 3), reference_rgb, atol=1e-5)
  np.testing.assert_allclose(tf.hsv_to_rgb(tf.rgb_to_hsv(float_image)), float_image, atol=1e-5)


@pytest.mark.parametrize('delta', [-0.5, -0.13, 0.0, 0.2, 0.45])
def test_hue_matches_colorsys(float_image, delta):
  np.testing.assert_allclose(tf.adjust_hue(float_image, delta),
                             np_hue(float_image.astype(np.float64), delta), atol=1e-5)


def test_grayscale_and_solarize_match_numpy(float_image):
  x64 = float_image.astype(np.float64)
  np.testing.assert_allclose(tf.to_grayscale(float_image),
                             np.repeat(np_gray(x64)[..., None], 3, axis=-1), atol=1e-6)
  np.testing.assert_array_equal(tf.solarize(float_image, 0.5),
                                np.where(float_image >= 0.5, 1 - float_image, float_image))


@pytest.mark.parametrize('random_order', [False, True])
def test_color_jitter_composes_the_ops_in_the_drawn_order(float_image, random_order):
  strengths = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
  x64 = float_image.astype(np.float64)
  for seed in range(3):
    uniforms = np.asarray(jax.random.uniform(jax.random.key(seed), (tf.NUM_JITTER_UNIFORMS,)))
    out = tf.color_jitter_from_uniforms(jnp.asarray(uniforms), float_image,
                                        random_order=random_order, **strengths)
    u = uniforms.astype(np.float64)
    ops = [lambda y: np_brightness(y, 0.2 + 1.6 * u[0]), lambda y: np_contrast(y, 0.2 + 1.6 * u[1]),
           lambda y: np_saturation(y, 0.2 + 1.6 * u[2]), lambda y: np_hue(y, -0.2 + 0.4 * u[3])]
    order = np.argsort(u[4:]) if random_order else range(4)
    expected = x64
    for index in order:
      expected = ops[index](expected)
    np.testing.assert_allclose(out, expected, atol=2e-5, err_msg=f'seed {seed}')


# ------------------------------------------------------------------------------------------------
# Blur, rotation, cutout, noise.


def test_blur_matches_numpy_separable_reference(float_image):
  sigma, kernel_size = 1.3, 5
  taps = np.arange(-2, 3)
  kernel = np.exp(-taps**2 / (2 * sigma**2))
  kernel /= kernel.sum()
  padded = np.pad(float_image.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode='reflect')
  rows = sum(kernel[t] * padded[t:t + 9] for t in range(5))
  expected = sum(kernel[t] * rows[:, t:t + 11] for t in range(5))
  np.testing.assert_allclose(tf.blur_with_sigma(float_image, sigma, kernel_size), expected,
                             atol=1e-5)
  assert tf.blur_kernel_size(224) == 23 and tf.blur_kernel_size(32) == 3


def test_rotate_by_90_degrees_is_rot90_counter_clockwise(float_image):
  x = float_image[:9, :9]
  np.testing.assert_allclose(tf.rotate(x, 90.0), np.rot90(x, k=1, axes=(0, 1)), atol=1e-5)


def test_cutout_fills_one_clipped_square(float_image):
  x = float_image[:8, :8] * 0.5 + 0.25  # no pixel equals the fill value
  for seed in range(10):
    center_y, center_x = (tf.uniform_int(u, 8)
                          for u in jax.random.uniform(jax.random.key(seed), (2,)))
    out = np.asarray(tf.cutout_at(x, center_y, center_x, size=0.5, fill=0.0))
    filled = np.all(out == 0.0, axis=-1)
    rows, cols = np.nonzero(filled)
    assert 0 < filled.sum() <= 16
    assert filled.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a full rectangle
    np.testing.assert_array_equal(out[~filled], x[~filled])


def test_gaussian_noise_has_the_requested_std():
  out = tf.gaussian_noise(jax.random.key(0), jnp.full((64, 64, 3), 0.5), std=0.05)
  assert abs(float(jnp.std(out)) - 0.05) < 0.003 and abs(float(jnp.mean(out)) - 0.5) < 0.003


# ------------------------------------------------------------------------------------------------
# Recipes and validation.


def test_simclr_recipes():
  cifar = aug.simclr_config(32)
  assert cifar.view1 == cifar.view2
  view = cifar.view1
  assert (view.brightness, view.contrast, view.saturation, view.hue) == (0.4, 0.4, 0.4, 0.1)
  assert (view.jitter_prob, view.grayscale_prob, view.flip_prob) == (0.8, 0.2, 0.5)
  assert view.blur_prob == 0.0 and view.solarize_prob == 0.0
  assert tuple(view.crop_scale) == (0.08, 1.0)
  assert tuple(view.mean) == aug.CIFAR10_MEAN
  imagenet = aug.simclr_view_config(224, dataset='imagenet2012')
  assert (imagenet.brightness, imagenet.hue, imagenet.blur_prob) == (0.8, 0.2, 0.5)
  assert tuple(imagenet.blur_sigma) == (0.1, 2.0) and tuple(imagenet.std) == aug.IMAGENET_STD
  assert imagenet.cutout_prob == imagenet.rotation_prob == imagenet.noise_prob == 0.0
  with pytest.raises(ValueError, match='dataset'):
    aug.simclr_config(32, dataset='mnist')


def test_byol_recipe_is_asymmetric():
  config = aug.byol_config(224, dataset='imagenet2012')
  view1, view2 = config.view1.to_dict(), config.view2.to_dict()
  assert (view1['blur_prob'], view2['blur_prob']) == (1.0, 0.1)
  assert (view1['solarize_prob'], view2['solarize_prob']) == (0.0, 0.2)
  for view in (view1, view2):
    assert (view['brightness'], view['contrast'], view['saturation'], view['hue']) == (
        0.4, 0.4, 0.2, 0.1)
    assert (view['jitter_prob'], view['grayscale_prob'], view['flip_prob']) == (0.8, 0.2, 0.5)
  differing = {k for k in view1 if view1[k] != view2[k]}
  assert differing == {'blur_prob', 'solarize_prob'}


@pytest.mark.parametrize('field, value', [
    ('flip_prob', 1.5), ('grayscale_prob', -0.1), ('noise_prob', 2.0),
    ('crop_scale', (0.5, 0.1)), ('crop_scale', (0.0, 1.0)), ('crop_ratio', (0.0, 1.0)),
    ('crop_ratio', (4 / 3, 3 / 4)), ('image_size', 0), ('hue', 0.6), ('brightness', -0.1),
    ('blur_sigma', (0.0, 1.0)), ('std', (0.2, 0.0, 0.2)), ('cutout_size', 1.5),
    ('crop_num_tries', 0),
])
def test_invalid_configs_name_the_field(field, value):
  config = aug.simclr_view_config(16)
  config[field] = value
  with pytest.raises(ValueError, match=field):
    aug.validate_view_config(config)
  with pytest.raises(ValueError, match=field):
    aug.augment_batch(jax.random.key(0), np.zeros((2, 16, 16, 3), np.uint8), config)


def test_recipes_take_statistics_explicitly_or_from_the_dataset_table():
  explicit = recipes.simclr_view_config(32, mean=datasets.CIFAR100_MEAN, std=datasets.CIFAR100_STD,
                                        family='cifar')
  assert explicit == recipes.simclr_view_config(32, dataset='cifar100')
  assert aug.simclr_view_config(32) == aug.simclr_view_config(32, dataset='cifar10')
  for name, info in datasets.DATASETS.items():
    view = aug.simclr_view_config(info.image_size, dataset=name)
    assert (tuple(view.mean), tuple(view.std)) == (info.mean, info.std), name
    assert view.blur_prob == (0.0 if info.family == 'cifar' else 0.5), name
  assert aug.byol_config(224, dataset='imagenet2012') == aug.byol_config(
      224, mean=datasets.IMAGENET_MEAN, std=datasets.IMAGENET_STD, family='imagenet')
  with pytest.raises(ValueError, match='either dataset or all of mean, std and family'):
    aug.simclr_config(32, dataset='cifar10', mean=(0.5, 0.5, 0.5))
  with pytest.raises(ValueError, match='either dataset or all of mean, std and family'):
    aug.simclr_config(32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
  with pytest.raises(ValueError, match='family'):
    aug.simclr_config(32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), family='mnist')


@pytest.mark.parametrize('recipe, entry, calls', [
    ('simclr', 'two_views', 1),   # one shared recipe: checked once
    ('byol', 'two_views', 2),     # two recipes: each checked once
    ('simclr', 'augment_batch', 1),
])
def test_each_entry_point_validates_its_recipe_once(monkeypatch, recipe, entry, calls):
  checked = []
  real_validate = aug.validate_view_config

  def counting_validate(view_config):
    checked.append(view_config.blur_prob)
    real_validate(view_config)

  monkeypatch.setattr(aug, 'validate_view_config', counting_validate)
  config = aug.simclr_config(8) if recipe == 'simclr' else aug.byol_config(8)
  if entry == 'two_views':
    fn = lambda k, x: aug.two_views(k, x, config)
  else:
    fn = lambda k, x: aug.augment_batch(k, x, config.view1)
  jax.eval_shape(fn, jax.random.key(0), jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.uint8))
  assert len(checked) == calls


def test_two_views_rejects_an_invalid_second_view():
  config = aug.byol_config(16)
  config.view2.solarize_prob = 1.5
  with pytest.raises(ValueError, match='solarize_prob'):
    aug.two_views(jax.random.key(0), np.zeros((2, 16, 16, 3), np.uint8), config)
  with pytest.raises(ValueError, match=r'two_views takes images \[B, H, W, C\]'):
    aug.two_views(jax.random.key(0), np.zeros((16, 16, 3), np.uint8), aug.simclr_config(16))
