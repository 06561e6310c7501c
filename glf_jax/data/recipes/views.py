"""One view's augmentation parameters (``simclr_view_config``: every field, SimCLR's values), their
check (``validate_view_config``), and what a two-view recipe is (:class:`Recipe`).

A view recipe is an ``ml_collections.ConfigDict`` with every parameter a field; a recipe for two
views has ``view1`` and ``view2``; ``glf_jax.data.augment`` applies it.

The normalisation statistics and the family (``'cifar'``: colour strength 0.5, no blur;
``'imagenet'``: 1.0 and blur) are given explicitly, ``mean=..., std=..., family=...``, or by a
dataset name of the table (``glf_jax.data.datasets``), ``dataset='cifar10'``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import ml_collections
import numpy as np

from glf_jax.data.datasets import CIFAR100_MEAN
from glf_jax.data.datasets import CIFAR100_STD
from glf_jax.data.datasets import CIFAR10_MEAN
from glf_jax.data.datasets import CIFAR10_STD
from glf_jax.data.datasets import DATASETS
from glf_jax.data.datasets import FAMILIES
from glf_jax.data.datasets import IMAGENET_MEAN
from glf_jax.data.datasets import IMAGENET_STD

__all__ = [
    'CIFAR100_MEAN', 'CIFAR100_STD', 'CIFAR10_MEAN', 'CIFAR10_STD', 'IMAGENET_MEAN',
    'IMAGENET_STD', 'Recipe', 'simclr_view_config', 'validate_view_config',
]


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A two-view recipe (the package ``glf_jax.data.recipes`` is their registry).

  Attributes:
    name: what a method names (``Method.augment``).
    from_base: ``base view -> {'view1': ..., 'view2': ...}``, each a ConfigDict: the recipe's two
      views made from SimCLR's view (``simclr_view_config``) of the dataset's statistics.
  """
  name: str
  from_base: Callable[[ml_collections.ConfigDict], dict]

  def views(self, image_size: int, **statistics) -> ml_collections.ConfigDict:
    """The recipe at ``image_size``; ``statistics``: ``dataset=`` (a name of the dataset table;
    CIFAR-10's by default) or all of ``mean=``, ``std=``, ``family=`` (as
    :func:`simclr_view_config`)."""
    return ml_collections.ConfigDict(self.from_base(simclr_view_config(image_size, **statistics)))

def _statistics(dataset: str | None, mean: Sequence[float] | None,
                std: Sequence[float] | None, family: str | None):
  """``(mean, std, family)``: the explicit ones, else ``dataset``'s (default CIFAR-10's)."""
  explicit = (mean, std, family)
  if all(value is None for value in explicit):
    info = DATASETS.get(dataset or 'cifar10')
    if info is None:
      raise ValueError(f'dataset must be one of {sorted(DATASETS)}, got {dataset!r}')
    return info.mean, info.std, info.family
  if dataset is not None or any(value is None for value in explicit):
    raise ValueError('give either dataset or all of mean, std and family; got '
                     f'dataset={dataset!r}, mean={mean!r}, std={std!r}, family={family!r}')
  if family not in FAMILIES:
    raise ValueError(f'family must be one of {list(FAMILIES)}, got {family!r}')
  return tuple(mean), tuple(std), family


def simclr_view_config(image_size: int, *, dataset: str | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                       family: str | None = None) -> ml_collections.ConfigDict:
  """One SimCLR view (SimCLR appendix A; CIFAR settings from appendix B.9).

  Colour strength ``s`` = 0.5 for the ``cifar`` family and 1.0 for ``imagenet``: jitter
  ``(0.8s, 0.8s, 0.8s, 0.2s)`` with probability 0.8; grayscale 0.2; blur 0.5 with sigma
  ``U[0.1, 2.0]`` for ``imagenet``, none for ``cifar``. The prototype-bias extras (rotation,
  cutout, noise) are present with probability 0.

  Args:
    image_size: side of the view.
    dataset: a name of the dataset table (or ``'cifar'`` / ``'imagenet'``) whose ``mean``, ``std``
      and ``family`` to use; CIFAR-10's when neither it nor the explicit statistics are given.
    mean, std, family: the statistics and family, all three, instead of ``dataset``.
  """
  mean, std, family = _statistics(dataset, mean, std, family)
  strength = 0.5 if family == 'cifar' else 1.0
  return ml_collections.ConfigDict(dict(
      image_size=image_size,
      # Random resized crop, horizontal flip.
      crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), crop_num_tries=10, flip_prob=0.5,
      # Rotation (a prototype-bias extra, off).
      rotation_prob=0.0, rotation_max_degrees=30.0, rotation_fill=0.0,
      # Colour jitter of strength s, then grayscale.
      jitter_prob=0.8, brightness=0.8 * strength, contrast=0.8 * strength,
      saturation=0.8 * strength, hue=0.2 * strength, jitter_random_order=True,
      grayscale_prob=0.2,
      # Gaussian blur (none for the cifar family), solarize (BYOL's view 2).
      blur_prob=0.0 if family == 'cifar' else 0.5, blur_sigma=(0.1, 2.0), blur_kernel_fraction=0.1,
      solarize_prob=0.0, solarize_threshold=0.5,
      # Cutout and Gaussian noise (prototype-bias extras, off).
      cutout_prob=0.0, cutout_size=0.5, cutout_fill=0.0, noise_prob=0.0, noise_std=0.05,
      # Normalisation.
      mean=tuple(mean), std=tuple(std),
  ))


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
