"""View recipes (the package is their registry, ``glf_jax.registry``): one module per two-view
recipe a method names (``Method.augment``): ``simclr``, ``byol``; ``views`` holds the base view,
its check and the :class:`Recipe` record.

The normalisation statistics and the family (``'cifar'``: colour strength 0.5, no blur;
``'imagenet'``: 1.0 and blur) are given explicitly, ``mean=..., std=..., family=...``, or by a
dataset name of the table (``glf_jax.data.datasets``), ``dataset='cifar10'``.
"""

from glf_jax import registry
from glf_jax.data.recipes.views import CIFAR100_MEAN
from glf_jax.data.recipes.views import CIFAR100_STD
from glf_jax.data.recipes.views import CIFAR10_MEAN
from glf_jax.data.recipes.views import CIFAR10_STD
from glf_jax.data.recipes.views import IMAGENET_MEAN
from glf_jax.data.recipes.views import IMAGENET_STD
from glf_jax.data.recipes.views import Recipe
from glf_jax.data.recipes.views import simclr_view_config
from glf_jax.data.recipes.views import validate_view_config

RECIPES: dict[str, Recipe] = registry.collect(__name__, 'RECIPE', Recipe)


def simclr_config(image_size: int, **statistics):
  """SimCLR's two views (``RECIPES['simclr']``; ``statistics``: as :meth:`Recipe.views`)."""
  return RECIPES['simclr'].views(image_size, **statistics)


def byol_config(image_size: int, **statistics):
  """BYOL's two views (``RECIPES['byol']``; ``statistics``: as :meth:`Recipe.views`)."""
  return RECIPES['byol'].views(image_size, **statistics)


__all__ = [
    'CIFAR100_MEAN', 'CIFAR100_STD', 'CIFAR10_MEAN', 'CIFAR10_STD', 'IMAGENET_MEAN',
    'IMAGENET_STD', 'RECIPES', 'Recipe', 'byol_config', 'simclr_config', 'simclr_view_config',
    'validate_view_config',
]
