"""The per-image transforms of the augmentations and the evaluation transform, in pure JAX.

Each is a deterministic function of ONE image ``[H, W, C]`` (float32 in ``[0, 1]``) and its
parameters: where SimCLR/BYOL draw a parameter at random, the function takes the draw, as a
``U[0, 1)`` number (``*_from_uniforms``, ``lerp``, ``uniform_int``) or as the value itself (a
factor, an angle, a centre). ``glf_jax.data.augment`` draws them and chains the transforms; the
only key taken here is ``gaussian_noise``'s, whose per-pixel draws are the transform itself.
Everything is jittable with static shapes.

The transforms follow torchvision's definitions where SimCLR (Chen et al. 2020, arXiv 2002.05709,
appendix A) and BYOL (Grill et al. 2020, arXiv 2006.07733, appendix B, table 6) leave a detail
open (each docstring says which). Every colour op clips its result to ``[0, 1]``, as torchvision
does.

Inputs: ``uint8`` (or any integer type, read as ``[0, 255]``) or float images already in
``[0, 1]``; ``to_float_rgb`` repeats one channel to RGB, any other channel count than 1 or 3 is an
error.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# ITU-R 601-2 luma weights (torchvision ``rgb_to_grayscale``, PIL ``convert('L')``).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


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


def lerp(low: float, high: float, uniform: jax.Array) -> jax.Array:
  """Maps ``uniform ~ U[0, 1)`` to ``U[low, high)``."""
  return low + (high - low) * uniform


def uniform_int(uniform: jax.Array, count) -> jax.Array:
  """Maps ``uniform ~ U[0, 1)`` to an integer uniform in ``[0, count - 1]`` (``count >= 1``)."""
  return jnp.clip(jnp.floor(uniform * count).astype(jnp.int32), 0, count - 1)


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
  """A crop box ``[top, left, crop_height, crop_width]`` (int32) inside the image.

  torchvision's ``RandomResizedCrop.get_params``, vectorised, from ``num_crop_uniforms(num_tries)``
  draws ``U[0, 1)``: ``num_tries`` candidates at once, each with area fraction ``U[scale]`` and
  log-uniform aspect ratio (width / height) in ``ratio``, sides rounded to whole pixels; the first
  candidate that fits the image is used, at a uniform random integer position (the last two
  draws). When none fits, the fallback is torchvision's: the central crop of the whole image, with
  its aspect ratio clamped into ``ratio``. The box always lies inside the image and both sides are
  at least one pixel. SimCLR appendix A (crop of 8%-100% of the area, aspect 3/4-4/3, then
  resize, ``crop_and_resize``); BYOL table 6.
  """
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
  random_top = uniform_int(top_u, height - crop_height + 1)
  random_left = uniform_int(left_u, width - crop_width + 1)
  top = jnp.where(any_fit, random_top, (height - fallback_height) // 2)
  left = jnp.where(any_fit, random_left, (width - fallback_width) // 2)
  return jnp.stack([top, left, crop_height, crop_width]).astype(jnp.int32)


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


# ------------------------------------------------------------------------------------------------
# Geometric transforms.


def horizontal_flip(image: jax.Array) -> jax.Array:
  """Mirrors the image left–right (SimCLR appendix A; BYOL table 6, p = 0.5)."""
  return image[:, ::-1, :]


def rotate(image: jax.Array, degrees: jax.Array, *, fill: float = 0.0) -> jax.Array:
  """Rotates by ``degrees`` counter-clockwise (as displayed) about the image centre.

  A prototype-bias extra; ``augment`` draws the angle from ``U[-max_degrees, max_degrees]``.

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
  """torchvision ``ColorJitter`` (SimCLR appendix A; BYOL table 6) from uniform draws.

  The ``NUM_JITTER_UNIFORMS`` draws ``U[0, 1)`` are 4 factors and 4 order keys. Factors:
  brightness, contrast and saturation ``U[max(0, 1 - x), 1 + x]``, hue ``U[-hue, hue]`` turns
  (``hue <= 0.5``). With ``random_order`` (torchvision's and SimCLR's behaviour) the four ops run
  in the order of their keys (a uniformly random order), each clipped to [0, 1]; otherwise in the
  fixed order brightness, contrast, saturation, hue. Ops of strength 0 are identities and are not
  traced.
  """
  brightness_factor = lerp(max(0.0, 1.0 - brightness), 1.0 + brightness, uniforms[0])
  contrast_factor = lerp(max(0.0, 1.0 - contrast), 1.0 + contrast, uniforms[1])
  saturation_factor = lerp(max(0.0, 1.0 - saturation), 1.0 + saturation, uniforms[2])
  hue_delta = lerp(-hue, hue, uniforms[3])
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

  SimCLR appendix A draws ``sigma ~ U[0.1, 2.0]`` pixels, ``kernel_size = blur_kernel_size(side)``.

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


def cutout_at(image: jax.Array, center_y: jax.Array, center_x: jax.Array, *, size: float,
              fill: float = 0.0) -> jax.Array:
  """Fills the square of side ``round(size * side)`` centred at pixel ``(center_y, center_x)``.

  Cutout (DeVries & Taylor 2017; a prototype-bias extra) with its centre given: ``augment`` draws
  a uniform random pixel. The square is clipped at the image border (so it may be smaller than
  ``size``). ``size`` is a fraction of each side; ``size = 0`` is the identity. ``fill`` is in
  [0, 1] pixel units (before normalisation; 0 = black).
  """
  height, width = image.shape[0], image.shape[1]
  box_height, box_width = int(round(size * height)), int(round(size * width))
  top = center_y - box_height // 2
  left = center_x - box_width // 2
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  inside = (rows >= top) & (rows < top + box_height) & (cols >= left) & (cols < left + box_width)
  return jnp.where(inside[..., None], jnp.asarray(fill, image.dtype), image)


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
# Evaluation.


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
