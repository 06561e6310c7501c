"""Input data: the dataset table, random-access sources and the grain loader.

* ``datasets``: the one table of dataset facts (builder, splits, sizes, mean/std, recipe family).
* ``sources``: ``make_source(config.data, split)`` and ``default_data_config(name)``, over the
  sources of ``tfds_source`` (TFDS ArrayRecord), ``image_folder`` (decoded once by
  ``decode_cache``) and ``digits`` (scikit-learn), with their base in ``source_base``.
* ``pipeline``: ``make_loader``: seeded order, per-process shard, checkpointable position.

The augmentations live in ``glf_jax.data.augment`` (composition; ``transforms``: the per-image
ops; ``recipes``: the view recipes), imported from there, not re-exported here.
"""

from glf_jax.data.pipeline import Loader
from glf_jax.data.pipeline import make_loader
from glf_jax.data.sources import CorruptImageError
from glf_jax.data.sources import DatasetNotPreparedError
from glf_jax.data.sources import default_data_config
from glf_jax.data.sources import DigitsSource
from glf_jax.data.sources import IMAGENET100_SYNSETS
from glf_jax.data.sources import ImageFolderSource
from glf_jax.data.sources import make_source
from glf_jax.data.sources import SOURCE_NAMES
from glf_jax.data.sources import TfdsSource

__all__ = [
    'CorruptImageError',
    'DatasetNotPreparedError',
    'DigitsSource',
    'IMAGENET100_SYNSETS',
    'ImageFolderSource',
    'Loader',
    'SOURCE_NAMES',
    'TfdsSource',
    'default_data_config',
    'make_loader',
    'make_source',
]
