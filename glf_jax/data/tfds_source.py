"""TFDS datasets read as ArrayRecord through ``tfds.data_source``, and the ImageNet-100 subset.

* ``cifar10``, ``cifar100``, ``stl10``, ``imagenet2012``: ``tfds.data_source`` over the ArrayRecord
  files that ``download_and_prepare(file_format='array_record')`` writes. Reading needs no
  TensorFlow; preparing them does, once (``DatasetNotPreparedError`` says the command).
* ``imagenet100``: the 100-class ImageNet subset of the CMC paper (``IMAGENET100_SYNSETS``), read
  from prepared ``imagenet2012`` files; the index list of the subset is computed once and cached.

Every read decodes the stored JPEG/PNG and, with ``image_size``, resizes it (about 260 ImageNet
images per core-second at 224 px). ``decode_cache=True`` (``data.decode_cache``) decodes and
resizes each image of the split once, into ``glf_jax.data.decode_cache``'s memory-mapped
``.npy`` cache under ``cache_dir`` (raw pixels: 150,528 bytes an image at 224 px, 19 GB for
ImageNet-100's training split); later reads are slices of it. The cache is keyed by the dataset,
its version, split, size and prepared files (names, sizes, times): preparing the data again, or
another ``image_size``, makes a new one (the stale one is removed).

Builders, split names and sizes come from the dataset table (``glf_jax.data.datasets``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import threading

from absl import logging
from etils import epath
import numpy as np

from glf_jax.runtime import fileio
from glf_jax.data import decode_cache as decode_cache_lib
from glf_jax.data.datasets import DATASETS
from glf_jax.data.source_base import DatasetNotPreparedError
from glf_jax.data.source_base import ImageSource
from glf_jax.data.source_base import resize_and_center_crop

# The ImageNet-100 classes of Tian et al., "Contrastive Multiview Coding" (2019), in the order of
# the paper's imagenet100.txt. Labels of the subset follow the *sorted* synsets, as an ImageFolder
# of these 100 class directories would number them.
IMAGENET100_SYNSETS = (
    'n02869837', 'n01749939', 'n02488291', 'n02107142', 'n13037406', 'n02091831', 'n04517823',
    'n04589890', 'n03062245', 'n01773797', 'n01735189', 'n07831146', 'n07753275', 'n03085013',
    'n04485082', 'n02105505', 'n01983481', 'n02788148', 'n03530642', 'n04435653', 'n02086910',
    'n02859443', 'n13040303', 'n03594734', 'n02085620', 'n02099849', 'n01558993', 'n04493381',
    'n02109047', 'n04111531', 'n02877765', 'n04429376', 'n02009229', 'n01978455', 'n02106550',
    'n01820546', 'n01692333', 'n07714571', 'n02974003', 'n02114855', 'n03785016', 'n03764736',
    'n03775546', 'n02087046', 'n07836838', 'n04099969', 'n04592741', 'n03891251', 'n02701002',
    'n03379051', 'n02259212', 'n07715103', 'n03947888', 'n04026417', 'n02326432', 'n03637318',
    'n01980166', 'n02113799', 'n02086240', 'n03903868', 'n02483362', 'n04127249', 'n02089973',
    'n03017168', 'n02093428', 'n02804414', 'n02396427', 'n04418357', 'n02172182', 'n01729322',
    'n02113978', 'n03787032', 'n02089867', 'n02119022', 'n03777754', 'n04238763', 'n02231487',
    'n03032252', 'n02138441', 'n02104029', 'n03837869', 'n03494278', 'n04136333', 'n03794056',
    'n03492542', 'n02018207', 'n04067472', 'n03930630', 'n03584829', 'n02123045', 'n04229816',
    'n02100583', 'n03642806', 'n04336792', 'n03259280', 'n02116738', 'n02108089', 'n03424325',
    'n01855672', 'n02090622',
)

# The TFDS-backed source names.
TFDS_NAMES = tuple(name for name, info in DATASETS.items() if info.kind == 'tfds')


class _MissingVariantFolderFilter:
  """Drops TFDS's warning that a dataset's version folder has no ``dataset_info.json`` when the
  folder does not exist: the dataset is not prepared, which ``DatasetNotPreparedError`` says with
  the command that prepares it. Other TFDS warnings (and this one for an existing folder) pass."""

  def filter(self, record) -> bool:
    if record.msg != 'Variant folder %s has no %s' or not record.args:
      return True
    folder = record.args[0]
    try:
      return bool(folder.exists()) if hasattr(folder, 'exists') else os.path.exists(folder)
    except Exception:  # pylint: disable=broad-except  # a log filter must not raise
      return True


def _quiet_missing_variant_folders() -> None:
  logger = logging.get_absl_logger()  # TFDS logs through absl
  if not any(isinstance(f, _MissingVariantFolderFilter) for f in logger.filters):
    logger.addFilter(_MissingVariantFolderFilter())


def resolve_tfds_data_dir(data_dir: str | os.PathLike[str] | None) -> str:
  """The TFDS data directory: the config's, else ``$TFDS_DATA_DIR``, else TFDS's default."""
  if data_dir:
    return os.fspath(pathlib.Path(data_dir).expanduser())
  if os.environ.get('TFDS_DATA_DIR'):
    return os.fspath(pathlib.Path(os.environ['TFDS_DATA_DIR']).expanduser())
  return os.fspath(pathlib.Path('~/tensorflow_datasets').expanduser())


def prepare_command(builder_name: str, data_dir: str) -> str:
  """The one-off shell command that prepares a TFDS dataset as ArrayRecord in ``data_dir``."""
  return ('python -c "import tensorflow_datasets as tfds; '
          f"tfds.builder('{builder_name}', data_dir='{data_dir}')"
          ".download_and_prepare(file_format='array_record')\"")


def prepare_from_examples(builder_name: str, data_dir: str | os.PathLike[str], features,
                          splits: dict) -> None:
  """Writes ``splits`` (``{split: [example dict, ...]}``, images already encoded) as a prepared
  ArrayRecord dataset ``builder_name`` in ``data_dir``, without TensorFlow: the registered builder
  of that name and version reads it back as data TFDS prepared. ``features`` is the builder's
  ``tfds.features.FeaturesDict``. For tests, benchmarks and small data made locally."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  version = tfds.builder_cls(builder_name).VERSION

  class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = version
    code_path = None  # no checksums file to look up (and no importlib_resources needed)

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(examples) for split, examples in splits.items()}

    def _generate_examples(self, examples):
      yield from enumerate(examples)

  LocalBuilder.name = builder_name
  LocalBuilder(data_dir=os.fspath(data_dir), file_format='array_record').download_and_prepare()


def _not_prepared_message(name: str, builder_name: str, data_dir: str, problem: str) -> str:
  lines = [
      f'dataset {name!r} (TFDS {builder_name!r}) {problem} in {data_dir}.',
      'Prepare it once as ArrayRecord (needs TensorFlow and internet access for this step only; '
      'training reads the files without TensorFlow):',
      '  pip install tensorflow tensorflow-datasets',
  ]
  if builder_name == 'imagenet2012':
    manual = os.path.join(data_dir, 'downloads', 'manual')
    lines += [
        '  ImageNet cannot be downloaded automatically: register at https://image-net.org, '
        'download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar and put both files in '
        f'{manual}/ first; then run',
    ]
  lines += [f'  {prepare_command(builder_name, data_dir)}',
            'or point data.data_dir (or $TFDS_DATA_DIR) to where it is already prepared.']
  return '\n'.join(lines)


class TfdsSource(ImageSource):
  """A TFDS dataset read through ``tfds.data_source`` (ArrayRecord, random access, no TF).

  ``image_size > 0`` resizes (shorter side) and centre-crops every image to a square; datasets
  whose images differ in size (ImageNet) need it. ``name='imagenet100'`` keeps only the
  ``IMAGENET100_SYNSETS`` classes of ``imagenet2012``, relabelled 0..99 in sorted-synset order.
  Labels are TFDS's (``stl10``'s 'unlabelled' split has label -1). ``decode_cache`` reads every
  image from a cache decoded once into ``cache_dir`` (default ``<data_dir>/glf_jax_cache``; see the
  module docstring), with ``decode_workers`` threads (default: the CPU count).
  """

  def __init__(self, name: str, split: str, *, data_dir: str | None = None,
               image_size: int = 0, cache_dir: str | None = None, decode_cache: bool = False,
               decode_workers: int | None = None):
    if name not in TFDS_NAMES:
      raise ValueError(f'unknown TFDS source {name!r}; expected one of {sorted(TFDS_NAMES)}')
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  # heavy; TFDS only
    info = DATASETS[name]
    builder_name = info.tfds_builder
    data_dir = resolve_tfds_data_dir(data_dir)
    _quiet_missing_variant_folders()
    builder = tfds.builder(builder_name, data_dir=data_dir)
    if not builder.is_prepared():
      raise DatasetNotPreparedError(
          _not_prepared_message(name, builder_name, data_dir, 'is not prepared'))
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
      raise DatasetNotPreparedError(_not_prepared_message(
          name, builder_name, data_dir,
          f'is prepared as {builder.info.file_format.value}, not array_record (random access)'))
    # The builder's own split names and TFDS split expressions such as 'train[:10%]' pass through;
    # their base name must exist.
    tfds_split = info.splits.get(split, split)
    available = list(builder.info.splits)
    if tfds_split.split('[')[0] not in available:
      renamed = [ours for ours, theirs in info.splits.items() if ours != theirs]
      raise ValueError(f'unknown split {split!r} for {name}; expected one of '
                       f'{sorted(available + renamed)}')
    image_feature_shape = tuple(builder.info.features['image'].shape)
    if not image_size and None in image_feature_shape:
      raise ValueError(f'{name} images differ in size; set data.image_size (e.g. 224)')

    self.name, self.split = name, split
    self._builder_name = builder_name
    self._tfds_split = tfds_split
    self.data_dir = data_dir
    self._image_size = int(image_size)
    self._data = tfds.data_source(builder_name, split=tfds_split, data_dir=data_dir,
                                  download=False)
    label_names = tuple(builder.info.features['label'].names)
    cache_root = cache_dir or os.path.join(data_dir, 'glf_jax_cache')
    if name == 'imagenet100':
      self.class_names = tuple(sorted(IMAGENET100_SYNSETS))
      new_label = {synset: i for i, synset in enumerate(self.class_names)}
      # Old label -> new label, -1 outside the subset.
      self._label_map = np.array([new_label.get(s, -1) for s in label_names], np.int32)
      self._rows = _imagenet100_rows(self._data, self._label_map, builder, tfds_split,
                                     cache_root)
    else:
      self.class_names = label_names
      self._label_map = None
      self._rows = None
    self.num_classes = len(self.class_names)
    self.image_shape = ((self._image_size, self._image_size, 3) if self._image_size
                        else image_feature_shape)
    self.cache_path, self.cache_built, self._decoded = None, False, None
    if decode_cache:
      self._open_decoded(builder, pathlib.Path(cache_root).expanduser(),
                         decode_workers or os.cpu_count() or 1)

  def _open_decoded(self, builder, cache_root: pathlib.Path, decode_workers: int) -> None:
    """Opens (building it first if needed) the split's decoded cache under ``cache_root``."""
    version_dir = epath.Path(builder.data_dir)
    prepared = sorted((f.name, f.stat().length, f.stat().mtime) for f in version_dir.iterdir())
    rows = None if self._rows is None else hashlib.sha256(self._rows.tobytes()).hexdigest()
    key = [decode_cache_lib.CACHE_FORMAT, self.name, self._builder_name, str(builder.version),
           self._tfds_split, self._image_size, len(self), rows, prepared]
    fingerprint = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    prefix = (f'{self.name}-{re.sub(r"[^A-Za-z0-9_.-]+", "_", self._tfds_split)}-'
              f'{self._image_size or "native"}px-')
    self.cache_path = cache_root / f'{prefix}{fingerprint}'
    if not decode_cache_lib.is_complete(self.cache_path):
      decode_cache_lib.write(
          self.cache_path, decode=lambda i: self._decode(i)['image'], count=len(self),
          labels=self.labels(), what=f'{self.name} {self.split} ({self.data_dir})',
          decode_workers=decode_workers,
          index={'dataset': self.name, 'builder': self._builder_name,
                 'version': str(builder.version), 'split': self._tfds_split,
                 'image_size': self._image_size, 'data_dir': self.data_dir})
      self.cache_built = True
    decode_cache_lib.remove_stale(cache_root, prefix, keep=self.cache_path)
    self._decoded = decode_cache_lib.Decoded(self.cache_path)

  def __len__(self) -> int:
    return len(self._rows) if self._rows is not None else len(self._data)

  def _read(self, index):
    if self._decoded is not None:
      return {'image': self._decoded.images[index], 'label': self._decoded.labels[index]}
    return self._decode(index)

  def _read_rows(self, rows):
    if self._decoded is None:
      return None  # one decode per example
    return {'image': self._decoded.images[rows], 'label': self._decoded.labels[rows]}

  def _decode(self, index):
    """Example ``index`` read from the ArrayRecord files: decoded, resized, relabelled."""
    row = int(self._rows[index]) if self._rows is not None else index
    example = self._data[row]
    image = np.asarray(example['image'], dtype=np.uint8)
    if self._image_size and image.shape[:2] != (self._image_size, self._image_size):
      image = resize_and_center_crop(image, self._image_size)
    label = int(example['label'])
    if self._label_map is not None:
      label = int(self._label_map[label])
    return {'image': image, 'label': np.int32(label)}

  def labels(self) -> np.ndarray:
    """Every example's label (int32, index order), read without decoding the images."""
    if self._decoded is not None:
      return self._decoded.labels.copy()
    raw = _scan_labels(self._builder_name, self._tfds_split, self.data_dir)
    if self._rows is not None:
      raw = raw[self._rows]
    if self._label_map is not None:
      raw = self._label_map[raw]
    return np.asarray(raw, np.int32)

  def example_ids(self) -> list[str]:
    """``'<name>/<split>/<i>'``; for a subset (ImageNet-100) the row of the full dataset."""
    if self._rows is None:
      return super().example_ids()
    return [f'{self._builder_name}/{self.split}/{int(r)}' for r in self._rows]


def _scan_labels(builder_name: str, tfds_split: str, data_dir: str) -> np.ndarray:
  """The labels (int64) of every row of a prepared split, images skipped, in batches."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  labels_only = tfds.data_source(builder_name, split=tfds_split, data_dir=data_dir,
                                 download=False, decoders={'image': tfds.decode.SkipDecoding()})
  labels = np.empty(len(labels_only), np.int64)
  chunk = 4096
  for start in range(0, len(labels), chunk):
    stop = min(start + chunk, len(labels))
    batch = labels_only.__getitems__(list(range(start, stop)))
    labels[start:stop] = [int(example['label']) for example in batch]
  return labels


_SUBSET_ROWS_MEMO: dict[str, np.ndarray] = {}
_SUBSET_ROWS_LOCK = threading.Lock()


def _imagenet100_rows(data, label_map, builder, tfds_split, cache_dir) -> np.ndarray:
  """Row numbers of ``data`` whose label is in the subset; computed once, cached on disk.

  Labels are read without decoding images (``SkipDecoding``), in batches; the result is memoised
  in this process and saved as ``.npy`` (a plain int64 array, no pickle) under ``cache_dir``.
  """
  cache_file = pathlib.Path(cache_dir) / (
      f'imagenet100-{tfds_split.replace("/", "_")}-v{builder.version}-n{len(data)}.npy')
  key = os.fspath(cache_file)
  with _SUBSET_ROWS_LOCK:
    if key in _SUBSET_ROWS_MEMO:
      return _SUBSET_ROWS_MEMO[key]
    if cache_file.is_file():
      rows = np.load(cache_file, allow_pickle=False)
    else:
      logging.info('imagenet100: scanning %d %s labels once (cache: %s)', len(data), tfds_split,
                   cache_file)
      labels = _scan_labels(builder.name, tfds_split, os.fspath(builder.data_dir_root))
      rows = np.flatnonzero(label_map[labels] >= 0).astype(np.int64)
      try:
        with fileio.atomic_write(cache_file) as f:
          np.save(f, rows, allow_pickle=False)
      except OSError as e:  # a read-only data directory: work on, recompute next time
        logging.warning('could not cache %s (%s); it will be recomputed next time', cache_file, e)
    _SUBSET_ROWS_MEMO[key] = rows
    return rows
