"""Image augmentations for contrastive learning, in pure JAX: a recipe applied to a batch.

``augment_view`` applies a view recipe (``glf_jax.data.recipes``) to ONE image with the
transforms of ``glf_jax.data.transforms``; ``augment_batch`` splits one key into per-example keys
and ``jax.vmap``s it over the batch; ``two_views`` makes the two views of a contrastive batch with
independent keys. All of it is jittable with static shapes, so it runs on the accelerator inside
the training step.

Conventions:

* Inputs: ``uint8`` (or any integer type, read as ``[0, 255]``) or float images already in
  ``[0, 1]``; one channel is repeated to RGB, any other channel count than 1 or 3 is an error.
* Validation: each entry point (``two_views``, ``augment_batch``, ``augment_view``) checks its
  recipe once, with ``validate_view_config``, before tracing; nothing below it checks again.
* Randomness: a view draws all its uniform numbers in one ``jax.random.uniform`` call (see
  ``_UniformDraws``) and passes them to the deterministic ``*_from_uniforms`` / ``*_at`` forms,
  which keeps the compiled graph small; only the Gaussian noise has a key of its own.
* A transform applied "with probability ``p``" is computed for every example and selected with
  ``jnp.where`` (``apply_if_below``); under ``vmap`` a ``lax.cond`` would become the same select,
  so this costs nothing extra, and probabilities of exactly 0 or 1 are resolved at trace time (a
  transform with ``p = 0`` is not even traced).
* Order: random resized crop → horizontal flip → rotation → colour jitter → grayscale →
  Gaussian blur → solarize → cutout → Gaussian noise → normalise. Crop, flip, jitter, grayscale,
  blur and solarize are in the SimCLR/BYOL order; rotation, cutout and noise are the extras of the
  prototype-bias study (arXiv 2510.10572), off by default: rotation is geometric and goes with the
  crop and flip, cutout and noise go last.

The recipes, their statistics and ``eval_transform`` are re-exported here, so ``augment.X`` keeps
working for them.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from glf_jax.data import transforms
from glf_jax.data.recipes import byol_config
from glf_jax.data.recipes import CIFAR100_MEAN
from glf_jax.data.recipes import CIFAR100_STD
from glf_jax.data.recipes import CIFAR10_MEAN
from glf_jax.data.recipes import CIFAR10_STD
from glf_jax.data.recipes import IMAGENET_MEAN
from glf_jax.data.recipes import IMAGENET_STD
from glf_jax.data.recipes import simclr_config
from glf_jax.data.recipes import simclr_view_config
from glf_jax.data.recipes import validate_view_config
from glf_jax.data.transforms import eval_transform

__all__ = [
    'CIFAR100_MEAN', 'CIFAR100_STD', 'CIFAR10_MEAN', 'CIFAR10_STD', 'IMAGENET_MEAN',
    'IMAGENET_STD', 'apply_if_below', 'augment_batch', 'augment_view', 'byol_config',
    'eval_transform', 'simclr_config', 'simclr_view_config', 'two_views', 'validate_view_config',
]

# U[0, 1) draws of one view besides the crop's and the jitter's: flip 1, rotation 2, jitter gate
# 1, grayscale 1, blur 2, solarize 1, cutout 3, noise 1.
_OTHER_UNIFORMS = 12


def apply_if_below(uniform: jax.Array, probability: float,
                   transform: Callable[[jax.Array], jax.Array], image: jax.Array) -> jax.Array:
  """``transform(image)`` where the draw ``uniform ~ U[0, 1)`` is below ``probability``.

  ``probability`` is a Python float: 0 and 1 are resolved at trace time; otherwise both branches
  are computed and one is selected with ``jnp.where`` (what ``lax.cond`` becomes under ``vmap``).
  """
  if probability <= 0.0:
    return image
  if probability >= 1.0:
    return transform(image)
  return jnp.where(uniform < probability, transform(image), image)


class _UniformDraws:
  """Hands out consecutive slices of one vector of ``U[0, 1)`` draws (at trace time).

  A view draws every random number in one ``jax.random.uniform`` call: one threefry evaluation per
  example instead of one per transform, which makes the jitted graph (and its compile time)
  several times smaller. The layout is fixed, so e.g. the crop of a given key does not change
  when another transform's probability does.
  """

  def __init__(self, draws: jax.Array):
    self._draws = draws
    self._next = 0

  def take(self, count: int) -> jax.Array:
    if self._next + count > self._draws.shape[0]:
      raise ValueError('internal error: not enough uniform draws')
    out = self._draws[self._next:self._next + count]
    self._next += count
    return out


def augment_view(key: jax.Array, image: jax.Array,
                 view_config: ml_collections.ConfigDict) -> jax.Array:
  """Augments ONE image ``[H, W, C]`` (uint8 or float in [0, 1]) into ``[S, S, 3]`` float32.

  ``S = view_config.image_size``; the result is normalised with ``view_config.mean/std``.
  """
  validate_view_config(view_config)
  return _augment_view(key, image, view_config)


def _augment_view(key, image, c):
  """``augment_view`` of a recipe ``c`` that the caller has validated."""
  image = transforms.to_float_rgb(image)
  if image.ndim != 3:
    raise ValueError(f'augment_view takes one image [H, W, C], got shape {image.shape}')
  lerp, uniform_int = transforms.lerp, transforms.uniform_int
  uniform_key, noise_key = jax.random.split(key)
  num_crop = transforms.num_crop_uniforms(c.crop_num_tries)
  draws = _UniformDraws(jax.random.uniform(
      uniform_key, (num_crop + transforms.NUM_JITTER_UNIFORMS + _OTHER_UNIFORMS,)))

  box = transforms.crop_box_from_uniforms(
      draws.take(num_crop), image.shape[0], image.shape[1], scale=tuple(c.crop_scale),
      ratio=tuple(c.crop_ratio), num_tries=c.crop_num_tries)
  image = transforms.crop_and_resize(image, box, c.image_size)

  image = apply_if_below(draws.take(1)[0], c.flip_prob, transforms.horizontal_flip, image)

  gate, angle = draws.take(2)
  image = apply_if_below(
      gate, c.rotation_prob,
      lambda x: transforms.rotate(
          x, lerp(-c.rotation_max_degrees, c.rotation_max_degrees, angle), fill=c.rotation_fill),
      image)

  gate = draws.take(1)[0]
  jitter_uniforms = draws.take(transforms.NUM_JITTER_UNIFORMS)
  image = apply_if_below(
      gate, c.jitter_prob,
      lambda x: transforms.color_jitter_from_uniforms(
          jitter_uniforms, x, brightness=c.brightness, contrast=c.contrast,
          saturation=c.saturation, hue=c.hue, random_order=c.jitter_random_order), image)

  image = apply_if_below(draws.take(1)[0], c.grayscale_prob, transforms.to_grayscale, image)

  gate, sigma_u = draws.take(2)
  kernel_size = transforms.blur_kernel_size(c.image_size, c.blur_kernel_fraction)
  image = apply_if_below(
      gate, c.blur_prob,
      lambda x: transforms.blur_with_sigma(x, lerp(c.blur_sigma[0], c.blur_sigma[1], sigma_u),
                                           kernel_size),
      image)

  image = apply_if_below(draws.take(1)[0], c.solarize_prob,
                         lambda x: transforms.solarize(x, c.solarize_threshold), image)

  gate, center_y_u, center_x_u = draws.take(3)
  image = apply_if_below(
      gate, c.cutout_prob,
      lambda x: transforms.cutout_at(x, uniform_int(center_y_u, c.image_size),
                                     uniform_int(center_x_u, c.image_size), size=c.cutout_size,
                                     fill=c.cutout_fill), image)

  gate = draws.take(1)[0]
  image = apply_if_below(gate, c.noise_prob,
                         lambda x: transforms.gaussian_noise(noise_key, x, std=c.noise_std),
                         image)
  return transforms.normalize(image, c.mean, c.std)


def augment_batch(key: jax.Array, images: jax.Array,
                  view_config: ml_collections.ConfigDict) -> jax.Array:
  """Augments a batch ``[B, H, W, C]`` with per-example keys ``jax.random.split(key, B)``."""
  validate_view_config(view_config)
  return _augment_batch(key, images, view_config, 'augment_batch')


def _augment_batch(key, images, view_config, caller: str):
  """``augment_batch`` of a validated recipe; ``caller`` names the entry point in errors."""
  images = _check_batch(images, caller)
  keys = jax.random.split(key, images.shape[0])
  return _augment_with_keys(keys, images, view_config)


def _check_batch(images, caller: str) -> jax.Array:
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'{caller} takes images [B, H, W, C], got shape {images.shape}')
  return images


def _augment_with_keys(keys, images, view_config):
  return jax.vmap(lambda k, x: _augment_view(k, x, view_config))(keys, images)


def two_views(key: jax.Array, images: jax.Array,
              config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """The two views ``(v1, v2)`` of a batch, from ``config.view1`` / ``config.view2``.

  The views use independent keys (``jax.random.split(key)``), each the key ``augment_batch``
  would be given for it. ``config`` is Python data: to jit, close over it, e.g.
  ``jax.jit(lambda k, x: two_views(k, x, config))``.
  """
  view1_key, view2_key = jax.random.split(key)
  validate_view_config(config.view1)
  if config.view1 != config.view2:
    validate_view_config(config.view2)
    return (_augment_batch(view1_key, images, config.view1, 'two_views'),
            _augment_batch(view2_key, images, config.view2, 'two_views'))
  # Same recipe (SimCLR): one vmap over both views, with the keys ``augment_batch`` would use, so
  # the result is identical and only one copy of the recipe is traced and compiled.
  images = _check_batch(images, 'two_views')
  batch = images.shape[0]
  keys = jnp.concatenate([jax.random.split(view1_key, batch), jax.random.split(view2_key, batch)])
  views = _augment_with_keys(keys, jnp.concatenate([images, images]), config.view1)
  return views[:batch], views[batch:]
