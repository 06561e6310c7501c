"""Image augmentations for contrastive learning, in pure JAX.

Every transform is a small function on ONE image ``[H, W, C]`` (float32 in ``[0, 1]``), a PRNG
key where it is random, and its parameters. ``augment_view`` chains them as a recipe describes;
``augment_batch`` splits one key into per-example keys and ``jax.vmap``s ``augment_view`` over the
batch; ``two_views`` makes the two views of a contrastive batch with independent keys. All of it
is jittable with static shapes, so it runs on the accelerator inside the training step.

The recipes follow SimCLR (Chen et al. 2020, arXiv 2002.05709, appendix A) and BYOL (Grill et al.
2020, arXiv 2006.07733, appendix B, table 6); the transforms follow torchvision's definitions
where SimCLR/BYOL leave a detail open (each docstring says which). Recipes are
``ml_collections.ConfigDict``s with every parameter a field; ``validate_view_config`` checks them.

Conventions:

* Inputs: ``uint8`` (or any integer type, read as ``[0, 255]``) or float images already in
  ``[0, 1]``; one channel is repeated to RGB, any other channel count than 1 or 3 is an error.
* Randomness: each random transform takes a key; ``augment_view`` instead draws all the uniform
  numbers of a view in one ``jax.random.uniform`` call (see ``_UniformDraws``) and uses the
  deterministic ``*_from_uniforms`` / ``*_at`` forms, which keeps the compiled graph small.
* A transform applied "with probability ``p``" is computed for every example and selected with
  ``jnp.where`` (``random_apply``); under ``vmap`` a ``lax.cond`` would become the same select, so
  this costs nothing extra, and probabilities of exactly 0 or 1 are resolved at trace time (a
  transform with ``p = 0`` is not even traced).
* Order in ``augment_view``: random resized crop → horizontal flip → rotation → colour jitter →
  grayscale → Gaussian blur → solarize → cutout → Gaussian noise → normalise. Crop, flip,
  jitter, grayscale, blur and solarize are in the SimCLR/BYOL order; rotation, cutout and noise
  are the extras of the prototype-bias study (arXiv 2510.10572), off by default: rotation is
  geometric and goes with the crop and flip, cutout and noise go last.
* Every colour op clips its result to ``[0, 1]``, as torchvision does.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

# Per-channel statistics of the training sets, for ``normalize``.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ITU-R 601-2 luma weights (torchvision ``rgb_to_grayscale``, PIL ``convert('L')``).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# dataset name -> (mean, std, recipe family). ``cifar`` recipes use colour strength s = 0.5 and no
# blur (SimCLR appendix B.9); ``imagenet`` recipes s = 1.0 and blur (SimCLR appendix A).
_DATASETS = {
    'cifar': (CIFAR10_MEAN, CIFAR10_STD, 'cifar'),
    'cifar10': (CIFAR10_MEAN, CIFAR10_STD, 'cifar'),
    'cifar100': (CIFAR100_MEAN, CIFAR100_STD, 'cifar'),
    'imagenet': (IMAGENET_MEAN, IMAGENET_STD, 'imagenet'),
    'imagenet100': (IMAGENET_MEAN, IMAGENET_STD, 'imagenet'),
}


# ------------------------------------------------------------------------------------------------
# Input handling and small helpers.


def to_float_rgb(image: jax.Array) -> jax.Array:
  """Converts an image (or batch) ``[..., H, W, C]`` to float32 RGB in ``[0, 1]``.

  Integer images are divided by 255; float images are assumed to be in ``[0, 1]`` already and only
  cast. ``C = 1`` is repeated to 3 channels; other channel counts than 1 and 3 raise ValueError.
  """
  image = jnp.asarray(image)
  if image.ndim < 3:
    raise ValueError(f'image must be [..., H, W, C], got shape {image.shape}')
  channels = image.shape[-1]
  if channels not in (1, 3):
    raise ValueError(f'image must have 1 or 3 channels, got {channels} (shape {image.shape})')
  if jnp.issubdtype(image.dtype, jnp.integer):
    image = image.astype(jnp.float32) / 255.0
  else:
    image = image.astype(jnp.float32)
  if channels == 1:
    image = jnp.repeat(image, 3, axis=-1)
  return image


def random_apply(key: jax.Array, probability: float, transform: Callable[[jax.Array], jax.Array],
                 image: jax.Array) -> jax.Array:
  """Returns ``transform(image)`` with probability ``probability``, else ``image``.

  ``probability`` is a Python float: 0 and 1 are resolved at trace time; otherwise both branches are
  computed and one is selected with ``jnp.where`` (what ``lax.cond`` becomes under ``vmap``).
  """
  return apply_if_below(jax.random.uniform(key), probability, transform, image)


def apply_if_below(uniform: jax.Array, probability: float,
                   transform: Callable[[jax.Array], jax.Array], image: jax.Array) -> jax.Array:
  """``transform(image)`` where the draw ``uniform ~ U[0, 1)`` is below ``probability``."""
  if probability <= 0.0:
    return image
  if probability >= 1.0:
    return transform(image)
  return jnp.where(uniform < probability, transform(image), image)


def _lerp(low: float, high: float, uniform: jax.Array) -> jax.Array:
  """Maps ``uniform ~ U[0, 1)`` to ``U[low, high)``."""
  return low + (high - low) * uniform


def _uniform_int(uniform: jax.Array, count) -> jax.Array:
  """Maps ``uniform ~ U[0, 1)`` to an integer uniform in ``[0, count - 1]`` (``count >= 1``)."""
  return jnp.clip(jnp.floor(uniform * count).astype(jnp.int32), 0, count - 1)


class _UniformDraws:
  """Hands out consecutive slices of one vector of ``U[0, 1)`` draws (at trace time).

  ``augment_view`` draws every random number of a view in one ``jax.random.uniform`` call: one
  threefry evaluation per example instead of one per transform, which makes the jitted graph (and
  its compile time) several times smaller. The layout is fixed, so e.g. the crop of a given key
  does not change when another transform's probability does.
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


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
  """``factor * image + (1 - factor) * other``, clipped to [0, 1] (torchvision ``_blend``)."""
  return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# Random resized crop (SimCLR appendix A "crop and resize"; BYOL table 6 "random crop").


def num_crop_uniforms(num_tries: int) -> int:
  """How many ``U[0, 1)`` draws ``crop_box_from_uniforms`` takes."""
  return 2 * num_tries + 2


def crop_box_from_uniforms(uniforms: jax.Array, height: int, width: int, *,
                           scale: tuple[float, float] = (0.08, 1.0),
                           ratio: tuple[float, float] = (3 / 4, 4 / 3),
                           num_tries: int = 10) -> jax.Array:
  """The crop box of ``sample_crop_box``, from ``num_crop_uniforms(num_tries)`` uniform draws."""
  area_u = uniforms[:num_tries]
  aspect_u = uniforms[num_tries:2 * num_tries]
  top_u, left_u = uniforms[2 * num_tries], uniforms[2 * num_tries + 1]
  target_area = float(height * width) * (scale[0] + (scale[1] - scale[0]) * area_u)
  log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_low + (log_high - log_low) * aspect_u)
  crop_widths = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  crop_heights = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  fits = ((crop_widths > 0) & (crop_widths <= width) &
          (crop_heights > 0) & (crop_heights <= height))
  first_fit = jnp.argmax(fits)
  any_fit = jnp.any(fits)

  # Fallback: central crop of the whole image, aspect clamped into ``ratio`` (static).
  image_aspect = width / height
  if image_aspect < min(ratio):
    fallback_width, fallback_height = width, int(round(width / min(ratio)))
  elif image_aspect > max(ratio):
    fallback_height, fallback_width = height, int(round(height * max(ratio)))
  else:
    fallback_width, fallback_height = width, height
  fallback_width = min(max(fallback_width, 1), width)
  fallback_height = min(max(fallback_height, 1), height)

  crop_height = jnp.where(any_fit, crop_heights[first_fit], fallback_height)
  crop_width = jnp.where(any_fit, crop_widths[first_fit], fallback_width)
  # Uniform integer position in [0, side - crop_side] (torchvision ``randint``).
  random_top = _uniform_int(top_u, height - crop_height + 1)
  random_left = _uniform_int(left_u, width - crop_width + 1)
  top = jnp.where(any_fit, random_top, (height - fallback_height) // 2)
  left = jnp.where(any_fit, random_left, (width - fallback_width) // 2)
  return jnp.stack([top, left, crop_height, crop_width]).astype(jnp.int32)


def sample_crop_box(key: jax.Array, height: int, width: int, *,
                    scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    num_tries: int = 10) -> jax.Array:
  """Samples a crop box ``[top, left, crop_height, crop_width]`` (int32) inside the image.

  torchvision's ``RandomResizedCrop.get_params``, vectorised: ``num_tries`` candidates are drawn at
  once, each with area fraction ``U[scale]`` and log-uniform aspect ratio (width / height) in
  ``ratio``, sides rounded to whole pixels; the first candidate that fits the image is used, at a
  uniform random integer position. When none fits, the fallback is torchvision's: the central crop
  of the whole image, with its aspect ratio clamped into ``ratio``. The box always lies inside the
  image and both sides are at least one pixel.
  """
  uniforms = jax.random.uniform(key, (num_crop_uniforms(num_tries),))
  return crop_box_from_uniforms(uniforms, height, width, scale=scale, ratio=ratio,
                                num_tries=num_tries)


def crop_and_resize(image: jax.Array, box: jax.Array, size: int) -> jax.Array:
  """Crops ``box = [top, left, height, width]`` (may be traced) and resizes it to ``[size, size]``.

  Bilinear, antialiased when shrinking (``jax.image.scale_and_translate``), so the output shape is
  static whatever the box. Output pixels near the box edge may draw on the pixels just outside the
  box (they are inside the image); torchvision crops first and clamps at the crop's edge instead.
  """
  box = box.astype(jnp.float32)
  top, left, crop_height, crop_width = box[0], box[1], box[2], box[3]
  scale = jnp.stack([size / crop_height, size / crop_width])
  translation = -jnp.stack([top, left]) * scale
  return jax.image.scale_and_translate(
      image, (size, size, image.shape[-1]), (0, 1), scale, translation,
      method='linear', antialias=True)


def random_resized_crop(key: jax.Array, image: jax.Array, *, size: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        num_tries: int = 10) -> jax.Array:
  """Random crop of area ``U[scale]`` and aspect ``ratio``, resized to ``[size, size]``.

  SimCLR appendix A (crop of 8%–100% of the area, aspect 3/4–4/3, then resize); BYOL table 6.
  See ``sample_crop_box`` for the sampling and ``crop_and_resize`` for the resampling.
  """
  height, width = image.shape[0], image.shape[1]
  box = sample_crop_box(key, height, width, scale=scale, ratio=ratio, num_tries=num_tries)
  return crop_and_resize(image, box, size)


# ------------------------------------------------------------------------------------------------
# Geometric transforms.


def horizontal_flip(image: jax.Array) -> jax.Array:
  """Mirrors the image left–right (SimCLR appendix A; BYOL table 6, p = 0.5)."""
  return image[:, ::-1, :]


def rotate(image: jax.Array, degrees: jax.Array, *, fill: float = 0.0) -> jax.Array:
  """Rotates by ``degrees`` counter-clockwise (as displayed) about the image centre.

  Bilinear (``map_coordinates``, order 1); pixels that come from outside the image are ``fill``
  (torchvision ``RandomRotation`` default 0). Output shape = input shape. ``degrees = 0`` is exact.
  """
  height, width = image.shape[0], image.shape[1]
  angle = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  center_y, center_x = (height - 1) / 2.0, (width - 1) / 2.0
  out_y, out_x = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32) - center_y,
                              jnp.arange(width, dtype=jnp.float32) - center_x, indexing='ij')
  # Inverse warp: output (x', y') samples input (x' cos - y' sin, x' sin + y' cos), y pointing down.
  source_x = out_x * cos - out_y * sin + center_x
  source_y = out_x * sin + out_y * cos + center_y

  def rotate_channel(channel):
    return jax.scipy.ndimage.map_coordinates(channel, [source_y, source_x], order=1,
                                             mode='constant', cval=fill)

  return jax.vmap(rotate_channel, in_axes=2, out_axes=2)(image)


def random_rotate(key: jax.Array, image: jax.Array, *, max_degrees: float,
                  fill: float = 0.0) -> jax.Array:
  """Rotates by an angle drawn from ``U[-max_degrees, max_degrees]`` (prototype-bias extra)."""
  degrees = _lerp(-max_degrees, max_degrees, jax.random.uniform(key))
  return rotate(image, degrees, fill=fill)


# ------------------------------------------------------------------------------------------------
# Colour transforms (SimCLR appendix A, "colour distortion"; BYOL table 6). Formulas: torchvision.


def to_grayscale(image: jax.Array) -> jax.Array:
  """ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B``, replicated to 3 channels."""
  luma = jnp.tensordot(image, jnp.asarray(LUMA_WEIGHTS, image.dtype), axes=[[-1], [0]])
  return jnp.repeat(luma[..., None], 3, axis=-1)


def adjust_brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
  """Multiplies by ``factor`` (blend with black), clipped to [0, 1]."""
  return _blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
  """Blends with the mean of the grayscale image (a scalar), clipped to [0, 1]."""
  mean_luma = jnp.mean(to_grayscale(image)[..., 0])
  return _blend(image, mean_luma, factor)


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
  """Blends with the grayscale image, clipped to [0, 1]."""
  return _blend(image, to_grayscale(image), factor)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
  """RGB → HSV, all channels in [0, 1]; same branches as Python's ``colorsys.rgb_to_hsv``.

  Gray pixels (max = min) get hue 0 and saturation 0; black gets saturation 0.
  """
  red, green, blue = image[..., 0], image[..., 1], image[..., 2]
  value = jnp.maximum(jnp.maximum(red, green), blue)
  minimum = jnp.minimum(jnp.minimum(red, green), blue)
  chroma = value - minimum
  has_chroma = chroma > 0
  safe_chroma = jnp.where(has_chroma, chroma, 1.0)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  saturation = jnp.where(has_chroma, saturation, 0.0)
  red_c = (value - red) / safe_chroma
  green_c = (value - green) / safe_chroma
  blue_c = (value - blue) / safe_chroma
  hue = jnp.where(red == value, blue_c - green_c,
                  jnp.where(green == value, 2.0 + red_c - blue_c, 4.0 + green_c - red_c))
  hue = jnp.where(has_chroma, jnp.mod(hue / 6.0, 1.0), 0.0)
  return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(image: jax.Array) -> jax.Array:
  """HSV → RGB, branch-free form of ``colorsys.hsv_to_rgb`` (as in BYOL's augmentations)."""
  hue, saturation, value = image[..., 0], image[..., 1], image[..., 2]
  hue6 = jnp.mod(hue, 1.0) * 6.0
  red_w = jnp.clip(jnp.abs(hue6 - 3.0) - 1.0, 0.0, 1.0)
  green_w = jnp.clip(2.0 - jnp.abs(hue6 - 2.0), 0.0, 1.0)
  blue_w = jnp.clip(2.0 - jnp.abs(hue6 - 4.0), 0.0, 1.0)
  gray = 1.0 - saturation
  return jnp.stack([value * (gray + saturation * red_w),
                    value * (gray + saturation * green_w),
                    value * (gray + saturation * blue_w)], axis=-1)


def adjust_hue(image: jax.Array, delta: jax.Array) -> jax.Array:
  """Rotates the hue by ``delta`` turns (``h -> (h + delta) mod 1`` in HSV), clipped to [0, 1]."""
  hsv = rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + delta, 1.0))
  return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


NUM_JITTER_UNIFORMS = 8


def color_jitter_from_uniforms(uniforms: jax.Array, image: jax.Array, *, brightness: float,
                               contrast: float, saturation: float, hue: float,
                               random_order: bool = True) -> jax.Array:
  """``color_jitter`` from ``NUM_JITTER_UNIFORMS`` uniform draws (4 factors, 4 order keys)."""
  brightness_factor = _lerp(max(0.0, 1.0 - brightness), 1.0 + brightness, uniforms[0])
  contrast_factor = _lerp(max(0.0, 1.0 - contrast), 1.0 + contrast, uniforms[1])
  saturation_factor = _lerp(max(0.0, 1.0 - saturation), 1.0 + saturation, uniforms[2])
  hue_delta = _lerp(-hue, hue, uniforms[3])
  candidates = [
      (brightness, lambda x: adjust_brightness(x, brightness_factor)),
      (contrast, lambda x: adjust_contrast(x, contrast_factor)),
      (saturation, lambda x: adjust_saturation(x, saturation_factor)),
      (hue, lambda x: adjust_hue(x, hue_delta)),
  ]
  active = [i for i, (strength, _) in enumerate(candidates) if strength > 0]
  ops = [candidates[i][1] for i in active]
  if not ops:
    return image
  if not random_order or len(ops) == 1:
    for op in ops:
      image = op(image)
    return image
  # A uniformly random order of the active ops: argsort of i.i.d. uniforms. The loop keeps one
  # copy of each op in the graph (under vmap ``switch`` evaluates every branch and selects).
  order = jnp.argsort(uniforms[4:][jnp.asarray(active)])
  return jax.lax.fori_loop(0, len(ops), lambda slot, x: jax.lax.switch(order[slot], ops, x),
                           image)


def color_jitter(key: jax.Array, image: jax.Array, *, brightness: float, contrast: float,
                 saturation: float, hue: float, random_order: bool = True) -> jax.Array:
  """torchvision ``ColorJitter`` (SimCLR appendix A; BYOL table 6).

  Factors: brightness, contrast and saturation ``U[max(0, 1 - x), 1 + x]``, hue ``U[-hue, hue]``
  turns (``hue <= 0.5``). With ``random_order`` (torchvision's and SimCLR's behaviour) the four
  ops run in a random order per example, each clipped to [0, 1]; otherwise in the fixed order
  brightness, contrast, saturation, hue. Ops of strength 0 are identities and are not traced.
  """
  uniforms = jax.random.uniform(key, (NUM_JITTER_UNIFORMS,))
  return color_jitter_from_uniforms(uniforms, image, brightness=brightness, contrast=contrast,
                                    saturation=saturation, hue=hue, random_order=random_order)


def solarize(image: jax.Array, threshold: float = 0.5) -> jax.Array:
  """``x -> 1 - x`` where ``x >= threshold`` (BYOL table 6, threshold 0.5 on [0, 1] pixels)."""
  return jnp.where(image >= threshold, 1.0 - image, image)


# ------------------------------------------------------------------------------------------------
# Blur, cutout, noise.


def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
  """Odd kernel size ``≈ fraction * side``, at least 3 (SimCLR: 10% of the side; 23 at 224)."""
  return max(3, int(side * fraction) // 2 * 2 + 1)


def blur_with_sigma(image: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
  """Separable Gaussian blur, odd ``kernel_size`` taps, reflect padding (torchvision).

  Taps ``exp(-x² / 2σ²)`` for ``x in [-k//2, k//2]``, normalised to sum 1; a tiny ``sigma`` gives the
  identity. Computed as a weighted sum of shifted slices, which vectorises well under ``vmap``
  with a per-example ``sigma``.
  """
  if kernel_size % 2 != 1 or kernel_size < 1:
    raise ValueError(f'kernel_size must be odd and positive, got {kernel_size}')
  radius = kernel_size // 2
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * jnp.square(taps / sigma))
  kernel = kernel / jnp.sum(kernel)

  def blur_axis(x, axis):
    if radius >= x.shape[axis]:
      raise ValueError(f'blur kernel {kernel_size} too large for an image side of {x.shape[axis]}')
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode='reflect')
    length = x.shape[axis]
    return sum(kernel[t] * jax.lax.slice_in_dim(padded, t, t + length, axis=axis)
               for t in range(kernel_size))

  return blur_axis(blur_axis(image, 0), 1)


def gaussian_blur(key: jax.Array, image: jax.Array, *, sigma_min: float = 0.1,
                  sigma_max: float = 2.0, kernel_size: int | None = None) -> jax.Array:
  """Gaussian blur with ``sigma ~ U[sigma_min, sigma_max]`` pixels (SimCLR appendix A).

  ``kernel_size`` defaults to ``blur_kernel_size(height)`` (10% of the side, odd).
  """
  if kernel_size is None:
    kernel_size = blur_kernel_size(image.shape[0])
  sigma = _lerp(sigma_min, sigma_max, jax.random.uniform(key))
  return blur_with_sigma(image, sigma, kernel_size)


def cutout_at(image: jax.Array, center_y: jax.Array, center_x: jax.Array, *, size: float,
              fill: float = 0.0) -> jax.Array:
  """Fills the square of side ``round(size * side)`` centred at pixel ``(center_y, center_x)``.

  The square is clipped at the image border. ``size`` is a fraction of each side.
  """
  height, width = image.shape[0], image.shape[1]
  box_height, box_width = int(round(size * height)), int(round(size * width))
  top = center_y - box_height // 2
  left = center_x - box_width // 2
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  inside = (rows >= top) & (rows < top + box_height) & (cols >= left) & (cols < left + box_width)
  return jnp.where(inside[..., None], jnp.asarray(fill, image.dtype), image)


def cutout(key: jax.Array, image: jax.Array, *, size: float, fill: float = 0.0) -> jax.Array:
  """Fills a square of side ``round(size * side)`` with ``fill`` (DeVries & Taylor 2017).

  The centre is a uniform random pixel; the square is clipped at the image border (so it may be
  smaller than ``size``). ``size`` is a fraction of each side; ``size = 0`` is the identity.
  ``fill`` is in [0, 1] pixel units (before normalisation; 0 = black).
  """
  uniforms = jax.random.uniform(key, (2,))
  center_y = _uniform_int(uniforms[0], image.shape[0])
  center_x = _uniform_int(uniforms[1], image.shape[1])
  return cutout_at(image, center_y, center_x, size=size, fill=fill)


def gaussian_noise(key: jax.Array, image: jax.Array, *, std: float) -> jax.Array:
  """Adds i.i.d. ``N(0, std²)`` noise per pixel and channel, clipped to [0, 1]."""
  noise = jax.random.normal(key, image.shape, image.dtype)
  return jnp.clip(image + std * noise, 0.0, 1.0)


def normalize(image: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """``(x - mean) / std`` per channel."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (image - mean) / std


# ------------------------------------------------------------------------------------------------
# Recipes.


def _dataset_entry(dataset: str):
  try:
    return _DATASETS[dataset.lower()]
  except KeyError:
    raise ValueError(f'dataset must be one of {sorted(_DATASETS)}, got {dataset!r}') from None


def simclr_view_config(image_size: int, *, dataset: str = 'cifar') -> ml_collections.ConfigDict:
  """One SimCLR view (SimCLR appendix A; CIFAR settings from appendix B.9).

  Colour strength ``s`` = 0.5 for CIFAR and 1.0 for ImageNet: jitter ``(0.8s, 0.8s, 0.8s, 0.2s)``
  with probability 0.8; grayscale 0.2; blur 0.5 with sigma ``U[0.1, 2.0]`` on ImageNet, none on
  CIFAR. The prototype-bias extras (rotation, cutout, noise) are present with probability 0.
  """
  mean, std, family = _dataset_entry(dataset)
  strength = 0.5 if family == 'cifar' else 1.0
  return ml_collections.ConfigDict(dict(
      image_size=image_size,
      # Random resized crop.
      crop_scale=(0.08, 1.0),
      crop_ratio=(3 / 4, 4 / 3),
      crop_num_tries=10,
      # Horizontal flip.
      flip_prob=0.5,
      # Rotation (prototype-bias extra).
      rotation_prob=0.0,
      rotation_max_degrees=30.0,
      rotation_fill=0.0,
      # Colour jitter.
      jitter_prob=0.8,
      brightness=0.8 * strength,
      contrast=0.8 * strength,
      saturation=0.8 * strength,
      hue=0.2 * strength,
      jitter_random_order=True,
      # Grayscale.
      grayscale_prob=0.2,
      # Gaussian blur.
      blur_prob=0.0 if family == 'cifar' else 0.5,
      blur_sigma=(0.1, 2.0),
      blur_kernel_fraction=0.1,
      # Solarize.
      solarize_prob=0.0,
      solarize_threshold=0.5,
      # Cutout (prototype-bias extra).
      cutout_prob=0.0,
      cutout_size=0.5,
      cutout_fill=0.0,
      # Gaussian noise (prototype-bias extra).
      noise_prob=0.0,
      noise_std=0.05,
      # Normalisation.
      mean=tuple(mean),
      std=tuple(std),
  ))


def simclr_config(image_size: int, *, dataset: str = 'cifar') -> ml_collections.ConfigDict:
  """SimCLR: two views drawn from the same recipe (``view1`` and ``view2`` identical)."""
  return ml_collections.ConfigDict(dict(
      view1=simclr_view_config(image_size, dataset=dataset),
      view2=simclr_view_config(image_size, dataset=dataset),
  ))


def byol_config(image_size: int, *, dataset: str = 'cifar') -> ml_collections.ConfigDict:
  """BYOL's asymmetric views (BYOL table 6).

  Both: crop (0.08, 1), flip 0.5, jitter 0.8 with brightness 0.4, contrast 0.4, saturation 0.2,
  hue 0.1, grayscale 0.2. View 1: blur 1.0, solarize 0.0. View 2: blur 0.1, solarize 0.2.
  ``dataset`` only selects the normalisation statistics.
  """
  views = {}
  for name, blur_prob, solarize_prob in (('view1', 1.0, 0.0), ('view2', 0.1, 0.2)):
    view = simclr_view_config(image_size, dataset=dataset)
    view.brightness, view.contrast, view.saturation, view.hue = 0.4, 0.4, 0.2, 0.1
    view.jitter_prob = 0.8
    view.grayscale_prob = 0.2
    view.blur_prob = blur_prob
    view.solarize_prob = solarize_prob
    views[name] = view
  return ml_collections.ConfigDict(views)


def _check_probability(name, value):
  if not 0.0 <= value <= 1.0:
    raise ValueError(f'{name} must be a probability in [0, 1], got {value}')


def _check_interval(name, interval, *, lower_bound=0.0):
  if len(interval) != 2:
    raise ValueError(f'{name} must be a pair (low, high), got {interval}')
  low, high = interval
  if not (low > lower_bound and high >= low):
    raise ValueError(f'{name} must satisfy {lower_bound} < low <= high, got {tuple(interval)}')


def _check_non_negative(name, value):
  if not value >= 0:
    raise ValueError(f'{name} must be >= 0, got {value}')


def validate_view_config(view_config: ml_collections.ConfigDict) -> None:
  """Raises ValueError, naming the field, if a view recipe is inconsistent."""
  c = view_config
  if not (isinstance(c.image_size, (int, np.integer)) and c.image_size > 0):
    raise ValueError(f'image_size must be a positive int, got {c.image_size!r}')
  for name in ('flip_prob', 'rotation_prob', 'jitter_prob', 'grayscale_prob', 'blur_prob',
               'solarize_prob', 'cutout_prob', 'noise_prob'):
    _check_probability(name, c[name])
  _check_interval('crop_scale', c.crop_scale)
  _check_interval('crop_ratio', c.crop_ratio)
  if not (isinstance(c.crop_num_tries, (int, np.integer)) and c.crop_num_tries >= 1):
    raise ValueError(f'crop_num_tries must be a positive int, got {c.crop_num_tries!r}')
  for name in ('brightness', 'contrast', 'saturation', 'rotation_max_degrees', 'noise_std'):
    _check_non_negative(name, c[name])
  if not 0.0 <= c.hue <= 0.5:
    raise ValueError(f'hue must be in [0, 0.5], got {c.hue}')
  _check_interval('blur_sigma', c.blur_sigma)
  if not 0.0 < c.blur_kernel_fraction <= 1.0:
    raise ValueError(f'blur_kernel_fraction must be in (0, 1], got {c.blur_kernel_fraction}')
  if not 0.0 <= c.cutout_size <= 1.0:
    raise ValueError(f'cutout_size must be in [0, 1], got {c.cutout_size}')
  if len(c.mean) != 3:
    raise ValueError(f'mean must have 3 entries (RGB), got {c.mean}')
  if len(c.std) != 3 or not all(s > 0 for s in c.std):
    raise ValueError(f'std must have 3 positive entries (RGB), got {c.std}')


# ------------------------------------------------------------------------------------------------
# Public API.


def augment_view(key: jax.Array, image: jax.Array,
                 view_config: ml_collections.ConfigDict) -> jax.Array:
  """Augments ONE image ``[H, W, C]`` (uint8 or float in [0, 1]) into ``[S, S, 3]`` float32.

  ``S = view_config.image_size``; the result is normalised with ``view_config.mean/std``.
  """
  c = view_config
  validate_view_config(c)
  image = to_float_rgb(image)
  if image.ndim != 3:
    raise ValueError(f'augment_view takes one image [H, W, C], got shape {image.shape}')
  uniform_key, noise_key = jax.random.split(key)
  draws = _UniformDraws(jax.random.uniform(
      uniform_key, (num_crop_uniforms(c.crop_num_tries) + NUM_JITTER_UNIFORMS + 12,)))

  box = crop_box_from_uniforms(draws.take(num_crop_uniforms(c.crop_num_tries)),
                               image.shape[0], image.shape[1], scale=tuple(c.crop_scale),
                               ratio=tuple(c.crop_ratio), num_tries=c.crop_num_tries)
  image = crop_and_resize(image, box, c.image_size)

  image = apply_if_below(draws.take(1)[0], c.flip_prob, horizontal_flip, image)

  gate, angle = draws.take(2)
  image = apply_if_below(
      gate, c.rotation_prob,
      lambda x: rotate(x, _lerp(-c.rotation_max_degrees, c.rotation_max_degrees, angle),
                       fill=c.rotation_fill), image)

  gate = draws.take(1)[0]
  jitter_uniforms = draws.take(NUM_JITTER_UNIFORMS)
  image = apply_if_below(
      gate, c.jitter_prob,
      lambda x: color_jitter_from_uniforms(
          jitter_uniforms, x, brightness=c.brightness, contrast=c.contrast,
          saturation=c.saturation, hue=c.hue, random_order=c.jitter_random_order), image)

  image = apply_if_below(draws.take(1)[0], c.grayscale_prob, to_grayscale, image)

  gate, sigma_u = draws.take(2)
  kernel_size = blur_kernel_size(c.image_size, c.blur_kernel_fraction)
  image = apply_if_below(
      gate, c.blur_prob,
      lambda x: blur_with_sigma(x, _lerp(c.blur_sigma[0], c.blur_sigma[1], sigma_u), kernel_size),
      image)

  image = apply_if_below(draws.take(1)[0], c.solarize_prob,
                         lambda x: solarize(x, c.solarize_threshold), image)

  gate, center_y_u, center_x_u = draws.take(3)
  image = apply_if_below(
      gate, c.cutout_prob,
      lambda x: cutout_at(x, _uniform_int(center_y_u, c.image_size),
                          _uniform_int(center_x_u, c.image_size), size=c.cutout_size,
                          fill=c.cutout_fill), image)

  gate = draws.take(1)[0]
  image = apply_if_below(gate, c.noise_prob,
                         lambda x: gaussian_noise(noise_key, x, std=c.noise_std), image)
  return normalize(image, c.mean, c.std)


def augment_batch(key: jax.Array, images: jax.Array,
                  view_config: ml_collections.ConfigDict) -> jax.Array:
  """Augments a batch ``[B, H, W, C]`` with per-example keys ``jax.random.split(key, B)``."""
  validate_view_config(view_config)
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'augment_batch takes images [B, H, W, C], got shape {images.shape}')
  keys = jax.random.split(key, images.shape[0])
  return _augment_with_keys(keys, images, view_config)


def _augment_with_keys(keys, images, view_config):
  return jax.vmap(lambda k, x: augment_view(k, x, view_config))(keys, images)


def two_views(key: jax.Array, images: jax.Array,
              config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """The two views ``(v1, v2)`` of a batch, from ``config.view1`` / ``config.view2``.

  The views use independent keys (``jax.random.split(key)``). ``config`` is Python data: to jit,
  close over it, e.g. ``jax.jit(lambda k, x: two_views(k, x, config))``.
  """
  view1_key, view2_key = jax.random.split(key)
  if config.view1 != config.view2:
    return (augment_batch(view1_key, images, config.view1),
            augment_batch(view2_key, images, config.view2))
  # Same recipe (SimCLR): one vmap over both views, with the keys ``augment_batch`` would use, so
  # the result is identical and only one copy of the recipe is traced and compiled.
  validate_view_config(config.view1)
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'two_views takes images [B, H, W, C], got shape {images.shape}')
  batch = images.shape[0]
  keys = jnp.concatenate([jax.random.split(view1_key, batch), jax.random.split(view2_key, batch)])
  views = _augment_with_keys(keys, jnp.concatenate([images, images]), config.view1)
  return views[:batch], views[batch:]


def eval_transform(images: jax.Array, *, size: int, mean: Sequence[float],
                   std: Sequence[float], crop_fraction: float = 1.0) -> jax.Array:
  """Deterministic evaluation transform of a batch ``[B, H, W, C]`` → ``[B, size, size, 3]``.

  Takes the central square of side ``crop_fraction * min(H, W)``, resizes it (bilinear,
  antialiased) to ``size`` and normalises. ``crop_fraction = 1`` (default) keeps the whole shorter
  side, the identity for CIFAR at its own size; ``0.875`` is the usual ImageNet "resize 256, centre
  crop 224" (up to torchvision's integer rounding).
  """
  if not (isinstance(size, (int, np.integer)) and size > 0):
    raise ValueError(f'size must be a positive int, got {size!r}')
  if not 0.0 < crop_fraction <= 1.0:
    raise ValueError(f'crop_fraction must be in (0, 1], got {crop_fraction}')
  images = to_float_rgb(images)
  if images.ndim != 4:
    raise ValueError(f'eval_transform takes images [B, H, W, C], got shape {images.shape}')
  height, width = images.shape[1], images.shape[2]
  side = crop_fraction * min(height, width)
  top, left = (height - side) / 2.0, (width - side) / 2.0
  scale = jnp.asarray([size / side, size / side], jnp.float32)
  translation = -jnp.asarray([top, left], jnp.float32) * scale
  resized = jax.image.scale_and_translate(images, (images.shape[0], size, size, 3), (1, 2),
                                          scale, translation, method='linear', antialias=True)
  return normalize(resized, mean, std)
