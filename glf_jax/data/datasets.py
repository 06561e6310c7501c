"""The dataset table: what this package knows about each data source name, in one place.

``DATASETS[name]`` (or ``dataset_info(name)``, which names the choices when ``name`` is unknown)
is a :class:`DatasetInfo`: where the images come from (``kind``, ``tfds_builder``, ``splits``),
their sizes (``image_size`` of the views, ``stored_size`` as read), the normalisation statistics
(``mean``, ``std``), the augmentation ``family`` and ``num_classes``. The sources, the
augmentation recipes and the config builder read it from here.

Pure data: no JAX, no TFDS, so any module can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Mapping

# Per-channel statistics of the training sets, for ``normalize``.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

KINDS = ('tfds', 'image_folder', 'digits')
# ``cifar``: colour strength s = 0.5, no blur (SimCLR appendix B.9), the CIFAR ResNet stem;
# ``imagenet``: s = 1.0 and blur (SimCLR appendix A), the ImageNet stem.
FAMILIES = ('cifar', 'imagenet')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """One data source.

  Attributes:
    name: the source name (``config.data.name``).
    kind: ``'tfds'`` (ArrayRecord through ``tfds.data_source``), ``'image_folder'`` or
      ``'digits'``: which source class reads it.
    tfds_builder: the TFDS builder behind a ``'tfds'`` source (``imagenet100`` reads
      ``imagenet2012``); None otherwise.
    splits: our split name -> the source's. ImageNet's labelled held-out split is
      ``'validation'``; ``'test'`` names it, so evaluation code can ask every source for
      ``'train'`` and ``'test'``. Empty for ``image_folder``, whose split folders decide. (TFDS
      sources also accept the builder's own split names and split expressions.)
    image_size: the side of the training views and of the evaluation transform.
    stored_size: the default ``config.data.image_size``: images are resized (shorter side) and
      centre-cropped to it as they are read; None keeps them as stored. ImageNet needs one, its
      images differ in size; digits are upscaled from 8x8.
    mean, std: per-channel normalisation statistics (RGB, pixels in [0, 1]).
    family: the augmentation recipe family, one of ``FAMILIES``.
    num_classes: classes of the labelled splits; None where the data decides (image folders).
    train_examples: images of the training split as the source reads it (the compile mode's
      epoch); None where the data decides.
  """

  name: str
  kind: str
  tfds_builder: str | None
  splits: Mapping[str, str]
  image_size: int
  stored_size: int | None
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  family: str
  num_classes: int | None
  train_examples: int | None = None

  def __post_init__(self):
    # Checked here, once, when the table is built: a typo fails at import.
    if self.kind not in KINDS:
      raise ValueError(f'{self.name}: kind must be one of {list(KINDS)}, got {self.kind!r}')
    if self.family not in FAMILIES:
      raise ValueError(f'{self.name}: family must be one of {list(FAMILIES)}, got '
                       f'{self.family!r}')
    if (self.kind == 'tfds') != (self.tfds_builder is not None):
      raise ValueError(f'{self.name}: tfds_builder is set exactly for kind tfds')
    # Read-only, like the rest of the frozen record.
    object.__setattr__(self, 'splits', types.MappingProxyType(dict(self.splits)))


_TRAIN_TEST = {'train': 'train', 'test': 'test'}
_IMAGENET_SPLITS = {'train': 'train', 'test': 'validation'}

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo('cifar10', 'tfds', 'cifar10', _TRAIN_TEST, 32, None,
                CIFAR10_MEAN, CIFAR10_STD, 'cifar', 10, 50_000),
    DatasetInfo('cifar100', 'tfds', 'cifar100', _TRAIN_TEST, 32, None,
                CIFAR100_MEAN, CIFAR100_STD, 'cifar', 100, 50_000),
    DatasetInfo('stl10', 'tfds', 'stl10',
                {'train': 'train', 'test': 'test', 'unlabelled': 'unlabelled'}, 96, None,
                IMAGENET_MEAN, IMAGENET_STD, 'imagenet', 10, 5_000),
    DatasetInfo('imagenet2012', 'tfds', 'imagenet2012', _IMAGENET_SPLITS, 224, 224,
                IMAGENET_MEAN, IMAGENET_STD, 'imagenet', 1000, 1_281_167),
    DatasetInfo('imagenet100', 'tfds', 'imagenet2012', _IMAGENET_SPLITS, 224, 224,
                IMAGENET_MEAN, IMAGENET_STD, 'imagenet', 100, 126_689),
    DatasetInfo('image_folder', 'image_folder', None, {}, 224, None,
                IMAGENET_MEAN, IMAGENET_STD, 'imagenet', None),
    # Digits use CIFAR-10's statistics and recipe: small natural-image-like defaults, no blur.
    DatasetInfo('digits', 'digits', None, _TRAIN_TEST, 16, 16,
                CIFAR10_MEAN, CIFAR10_STD, 'cifar', 10, 1_347),
)}


def dataset_info(name: str) -> DatasetInfo:
  """The table entry of ``name``; ValueError listing the known names if there is none."""
  try:
    return DATASETS[name]
  except (KeyError, TypeError):
    raise ValueError(f'unknown dataset {name!r}; expected one of {list(DATASETS)}') from None
