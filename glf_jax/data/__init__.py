"""Input data: random-access sources and the grain loader.

* ``sources``: TFDS (ArrayRecord), image folders (decoded once into a cache) and scikit-learn
  digits, each as a random-access source; ``make_source(config.data, split)``.
* ``pipeline``: ``make_loader``: seeded order, per-process shard, checkpointable position.

The augmentations live in ``glf_jax.data.augment`` (imported from there, not re-exported here).
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
