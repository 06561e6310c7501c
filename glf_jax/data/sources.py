"""Which source a run reads: ``make_source(config.data, split)`` and ``default_data_config(name)``.

Every source is a random-access sequence that grain reads by index (``source_base``):
``len(source)``, ``source[i] -> {'image': uint8 [H, W, 3], 'label': int32 scalar}``,
``source.num_classes``, ``source.image_shape`` and ``source.class_names``. The names, with their
builders, splits and default sizes, are the dataset table's (``glf_jax.data.datasets``):

* ``cifar10``, ``cifar100``, ``stl10``, ``imagenet2012``, ``imagenet100``: TFDS ArrayRecord files
  (``tfds_source.TfdsSource``; ``imagenet100`` is the CMC subset of ``imagenet2012``).
* ``image_folder``: ``root/<split>/<class>/*.{jpg,jpeg,png}``, decoded once into an on-disk cache
  (``image_folder.ImageFolderSource``, ``decode_cache``), then read by index.
* ``digits``: scikit-learn's 8x8 digits (``digits.DigitsSource``), offline.

``data.num_classes_subset`` / ``data.long_tail_ratio`` wrap any of them in a class subset or a
long-tailed training split (``subsets.SubsetSource``).

The sources' classes, errors and helpers are re-exported here, so ``sources.X`` keeps working.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
from ml_collections import config_dict
import numpy as np

from glf_jax.data import subsets
from glf_jax.data.datasets import DATASETS
from glf_jax.data.digits import DigitsSource
from glf_jax.data.image_folder import check_image_folder_classes
from glf_jax.data.image_folder import check_image_folder_split
from glf_jax.data.image_folder import IMAGE_EXTENSIONS
from glf_jax.data.image_folder import ImageFolderSource
from glf_jax.data.source_base import CorruptImageError
from glf_jax.data.source_base import DatasetNotPreparedError
from glf_jax.data.source_base import ImageSource
from glf_jax.data.source_base import resize_and_center_crop
from glf_jax.data.source_base import unseen_classes_message
from glf_jax.data.tfds_source import IMAGENET100_SYNSETS
from glf_jax.data.tfds_source import prepare_command
from glf_jax.data.tfds_source import resolve_tfds_data_dir
from glf_jax.data.tfds_source import TfdsSource

SOURCE_NAMES = tuple(DATASETS)

__all__ = [
    'CorruptImageError',
    'DatasetNotPreparedError',
    'DigitsSource',
    'IMAGE_EXTENSIONS',
    'IMAGENET100_SYNSETS',
    'ImageFolderSource',
    'ImageSource',
    'SOURCE_NAMES',
    'TfdsSource',
    'check_image_folder_classes',
    'check_image_folder_split',
    'check_shared_classes',
    'data_name',
    'default_data_config',
    'make_source',
    'prepare_command',
    'resize_and_center_crop',
    'resolve_tfds_data_dir',
]


def _unknown_source(name: str) -> ValueError:
  return ValueError(f'unknown data source {name!r}; expected one of {list(SOURCE_NAMES)}')


def default_data_config(name: str = 'digits') -> ml_collections.ConfigDict:
  """The ``config.data`` sub-tree for source ``name``, with that source's defaults.

  Fields (None: not set): ``name``; ``data_dir`` (TFDS data directory; None =
  ``$TFDS_DATA_DIR`` or TFDS's default); ``root`` (image folders); ``cache_dir`` (None = next to
  ``root``, or ``<data_dir>/glf_jax_cache`` for TFDS's decoded images and the ImageNet-100
  index); ``image_size`` (resize and centre-crop every image to this side as it is read; None
  keeps the stored size; the table's ``stored_size`` by default); ``skip_corrupt``;
  ``decode_cache`` (TFDS sources: decode and resize each image once, into ``cache_dir``, and read
  the pixels from there; image folders always are); the studies' subsets (``glf_jax.data.subsets``):
  ``num_classes_subset`` (None = all classes; ``C``: ``C`` classes chosen by
  ``class_subset_seed``, relabelled ``0..C-1``), ``long_tail_ratio`` (None = as is; ``rho >=
  1``: an exponentially long-tailed training split, max/min class count ``rho``) and
  ``examples_per_class`` (None = all; ``k``: the training split's first ``k`` of each class).
  """
  if name not in SOURCE_NAMES:
    raise _unknown_source(name)
  config = ml_collections.ConfigDict()
  config.name = name
  config.data_dir = config_dict.placeholder(str)
  config.root = config_dict.placeholder(str)
  config.cache_dir = config_dict.placeholder(str)
  config.image_size = config_dict.placeholder(int)
  config.image_size = DATASETS[name].stored_size
  config.skip_corrupt = False
  # TFDS sources: decode (and resize) every image once into cache_dir, read the pixels from there
  # (tfds_source; image folders always are).
  config.decode_cache = False
  config.num_classes_subset = config_dict.placeholder(int)
  config.class_subset_seed = 0
  config.long_tail_ratio = config_dict.placeholder(float)
  config.examples_per_class = config_dict.placeholder(int)
  return config


def data_name(data_config: Any) -> str:
  """What tables and titles call the data: an image folder's folder name (``cifar10`` for
  ``/data/cifar10``), else ``data.name``."""
  root = data_config.get('root')
  if data_config.get('name') == 'image_folder' and root:
    return os.path.basename(os.path.normpath(os.path.expanduser(str(root)))) or str(root)
  return str(data_config.get('name'))


def check_shared_classes(train: ImageSource, test: ImageSource, data: str) -> None:
  """Raises ValueError if ``test`` has examples of a class that ``train`` has none of
  (``source_base.unseen_classes_message``; ``data`` names the data in it). TFDS datasets' splits
  share their classes by construction: their labels are not scanned (a long-tailed or class
  subset of one is: its labels are held)."""
  if isinstance(train, TfdsSource) or isinstance(test, TfdsSource):
    return
  unseen = np.setdiff1d(np.unique(test.labels()), np.unique(train.labels()))
  if len(unseen):
    names = test.class_names
    raise ValueError(unseen_classes_message(
        data, train.split, test.split, [names[i] if i < len(names) else str(i) for i in unseen]))


def make_source(data_config: Any, split: str) -> ImageSource:
  """Builds the random-access source that ``data_config`` (``config.data``) names, for ``split``.

  With ``num_classes_subset`` or (for ``split='train'``) ``long_tail_ratio`` set, the source is a
  ``subsets.SubsetSource`` over the one built here (``glf_jax.data.subsets``).

  Raises:
    ValueError: unknown name or split (the message lists the allowed values), a missing ``root``
      for image folders, an unprepared TFDS dataset (``DatasetNotPreparedError``), or a bad
      subset key (the message names it).
  """
  subsets.check_subset_config(data_config)  # before any data is read
  return subsets.apply_subsets(_make_full_source(data_config, split), data_config)


def _make_full_source(data_config: Any, split: str) -> ImageSource:
  """``make_source`` before the subsets: the whole split."""
  get = data_config.get
  name = get('name', 'digits')
  image_size = get('image_size') or 0
  if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 0:
    raise ValueError(f'data.image_size must be an int >= 1 or None (keep the size), got '
                     f'{image_size!r}')
  if name not in SOURCE_NAMES:
    raise _unknown_source(name)
  kind = DATASETS[name].kind
  if kind == 'digits':
    return DigitsSource(split, image_size=image_size)
  if kind == 'image_folder':
    if not get('root'):
      raise ValueError('data.root must name the image folder (<root>/<split>/<class>/*.jpg) '
                       "when data.name='image_folder'")
    return ImageFolderSource(get('root'), split, image_size=image_size,
                             cache_dir=get('cache_dir'),
                             skip_corrupt=bool(get('skip_corrupt', False)))
  decode_cache = get('decode_cache', False)
  if not isinstance(decode_cache, bool):
    raise ValueError(f'data.decode_cache must be True or False, got {decode_cache!r}')
  return TfdsSource(name, split, data_dir=get('data_dir'), image_size=image_size,
                    cache_dir=get('cache_dir'), decode_cache=decode_cache)
