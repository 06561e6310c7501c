"""Random-access image sources: TFDS (ArrayRecord), image folders and scikit-learn digits.

Every source is a random-access sequence that grain reads by index:

* ``len(source)`` and ``source[i] -> {'image': uint8 [H, W, 3], 'label': int32 scalar}``;
* ``source.num_classes``, ``source.image_shape`` (``(H, W, 3)``) and ``source.class_names``.

Which source a run uses comes from ``config.data`` (see ``default_data_config``) through
``make_source(config.data, split)``:

* ``cifar10``, ``cifar100``, ``stl10``, ``imagenet2012``: ``tfds.data_source`` over the ArrayRecord
  files that ``download_and_prepare(file_format='array_record')`` writes. Reading needs no
  TensorFlow; preparing them does, once (``DatasetNotPreparedError`` says the command).
* ``imagenet100``: the 100-class ImageNet subset of the CMC paper (``IMAGENET100_SYNSETS``), read
  from prepared ``imagenet2012`` files; the index list of the subset is computed once and cached.
* ``image_folder``: ``root/<split>/<class>/*.{jpg,jpeg,png}``, decoded once into an on-disk cache
  (``ImageFolderSource``), then read by index.
* ``digits``: scikit-learn's 8x8 digits, shipped with scikit-learn, so it works offline.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import threading
import uuid
from typing import Any, Sequence

from absl import logging
import ml_collections
import numpy as np
from PIL import Image

SOURCE_NAMES = ('cifar10', 'cifar100', 'stl10', 'imagenet2012', 'imagenet100', 'image_folder',
                'digits')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')

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

# The TFDS builder behind each TFDS-backed source name.
_TFDS_BUILDERS = {
    'cifar10': 'cifar10',
    'cifar100': 'cifar100',
    'stl10': 'stl10',
    'imagenet2012': 'imagenet2012',
    'imagenet100': 'imagenet2012',
}
# ImageNet's labelled held-out split is 'validation'; 'test' names it, so evaluation code can ask
# every source for 'train' and 'test'.
_SPLIT_ALIASES = {'imagenet2012': {'test': 'validation'}, 'imagenet100': {'test': 'validation'}}
# Image sizes a config starts from: ImageNet images differ in size, so they need one.
_DEFAULT_IMAGE_SIZE = {'imagenet2012': 224, 'imagenet100': 224}


class DatasetNotPreparedError(ValueError):
  """A TFDS dataset is not prepared (as ArrayRecord) in the data directory."""


class CorruptImageError(ValueError):
  """An image file could not be decoded; ``path`` names it."""

  def __init__(self, path: str | os.PathLike[str], reason: str):
    self.path = os.fspath(path)
    super().__init__(f'cannot decode image file {self.path}: {reason}')


# ----------------------------------------------------------------------------------------------
# Shared pieces


class ImageSource:
  """Base of every source: indexing, bounds checks and the common attributes.

  Subclasses set ``name``, ``split``, ``num_classes``, ``image_shape`` and ``class_names`` and
  implement ``__len__`` and ``_read(i)``.
  """

  name: str
  split: str
  num_classes: int
  image_shape: tuple[int, int, int]
  class_names: tuple[str, ...]

  def __len__(self) -> int:
    raise NotImplementedError

  def _read(self, index: int) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    length = len(self)
    if index < 0:
      index += length
    if not 0 <= index < length:
      raise IndexError(f'index {index} out of range for {self!r} of length {length}')
    return self._read(index)

  def __repr__(self) -> str:
    return (f'{type(self).__name__}(name={self.name!r}, split={self.split!r}, len={len(self)}, '
            f'image_shape={self.image_shape}, num_classes={self.num_classes})')


def resize_and_center_crop(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
  """Resizes the shorter side to ``size`` (bicubic, antialiased), then centre-crops a square.

  Keeping the aspect ratio (rather than squashing) leaves objects undistorted; the random crops of
  the augmentations then work on a square canvas.
  """
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  width, height = image.size
  if (width, height) != (size, size):
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
  return np.asarray(image.convert('RGB'), dtype=np.uint8)


def _check_split(split: str, allowed: Sequence[str], what: str) -> None:
  if split not in allowed:
    raise ValueError(f'unknown split {split!r} for {what}; expected one of {sorted(allowed)}')


# ----------------------------------------------------------------------------------------------
# scikit-learn digits


class DigitsSource(ImageSource):
  """scikit-learn's 1,797 8x8 digits as uint8 RGB: the embedded, offline default.

  Pixel values 0..16 are scaled to 0..255 and repeated to three channels. The split is a fixed,
  stratified 1,347 / 450 train / test split (seed 0), the same on every machine.
  """

  TEST_SIZE = 450
  SPLIT_SEED = 0
  SPLITS = ('train', 'test')

  def __init__(self, split: str = 'train', image_size: int = 0):
    from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
    from sklearn import model_selection  # pylint: disable=g-import-not-at-top
    _check_split(split, self.SPLITS, 'digits')
    digits = sk_datasets.load_digits()
    everything = np.arange(len(digits.target))
    train, test = model_selection.train_test_split(
        everything, test_size=self.TEST_SIZE, stratify=digits.target,
        random_state=self.SPLIT_SEED)
    rows = np.sort(train if split == 'train' else test)
    grey = np.round(digits.images[rows] * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    if image_size:
      images = np.stack([resize_and_center_crop(image, image_size) for image in images])
    self.name, self.split = 'digits', split
    self._images = images
    self._labels = digits.target[rows].astype(np.int32)
    self.num_classes = 10
    self.class_names = tuple(str(d) for d in range(10))
    self.image_shape = tuple(images.shape[1:])

  def __len__(self) -> int:
    return len(self._labels)

  def _read(self, index):
    return {'image': self._images[index], 'label': self._labels[index]}


# ----------------------------------------------------------------------------------------------
# TFDS (ArrayRecord)


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
  Labels are TFDS's (``stl10``'s 'unlabelled' split has label -1).
  """

  def __init__(self, name: str, split: str, *, data_dir: str | None = None,
               image_size: int = 0, cache_dir: str | None = None):
    if name not in _TFDS_BUILDERS:
      raise ValueError(f'unknown TFDS source {name!r}; expected one of {sorted(_TFDS_BUILDERS)}')
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  # heavy; TFDS only
    builder_name = _TFDS_BUILDERS[name]
    data_dir = resolve_tfds_data_dir(data_dir)
    builder = tfds.builder(builder_name, data_dir=data_dir)
    if not builder.is_prepared():
      raise DatasetNotPreparedError(
          _not_prepared_message(name, builder_name, data_dir, 'is not prepared'))
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
      raise DatasetNotPreparedError(_not_prepared_message(
          name, builder_name, data_dir,
          f'is prepared as {builder.info.file_format.value}, not array_record (random access)'))
    tfds_split = _SPLIT_ALIASES.get(name, {}).get(split, split)
    available = list(builder.info.splits)
    # TFDS split expressions such as 'train[:10%]' are allowed; their base name must exist.
    if tfds_split.split('[')[0] not in available:
      raise ValueError(f'unknown split {split!r} for {name}; expected one of '
                       f'{sorted(available + list(_SPLIT_ALIASES.get(name, {})))}')
    image_feature_shape = tuple(builder.info.features['image'].shape)
    if not image_size and None in image_feature_shape:
      raise ValueError(f'{name} images differ in size; set data.image_size (e.g. 224)')

    self.name, self.split = name, split
    self.data_dir = data_dir
    self._image_size = int(image_size)
    self._data = tfds.data_source(builder_name, split=tfds_split, data_dir=data_dir,
                                  download=False)
    label_names = tuple(builder.info.features['label'].names)
    if name == 'imagenet100':
      self.class_names = tuple(sorted(IMAGENET100_SYNSETS))
      new_label = {synset: i for i, synset in enumerate(self.class_names)}
      # Old label -> new label, -1 outside the subset.
      self._label_map = np.array([new_label.get(s, -1) for s in label_names], np.int32)
      self._rows = _imagenet100_rows(self._data, self._label_map, builder, tfds_split,
                                     cache_dir or os.path.join(data_dir, 'glf_jax_cache'))
    else:
      self.class_names = label_names
      self._label_map = None
      self._rows = None
    self.num_classes = len(self.class_names)
    self.image_shape = ((self._image_size, self._image_size, 3) if self._image_size
                        else image_feature_shape)

  def __len__(self) -> int:
    return len(self._rows) if self._rows is not None else len(self._data)

  def _read(self, index):
    row = int(self._rows[index]) if self._rows is not None else index
    example = self._data[row]
    image = np.asarray(example['image'], dtype=np.uint8)
    if self._image_size and image.shape[:2] != (self._image_size, self._image_size):
      image = resize_and_center_crop(image, self._image_size)
    label = int(example['label'])
    if self._label_map is not None:
      label = int(self._label_map[label])
    return {'image': image, 'label': np.int32(label)}


_SUBSET_ROWS_MEMO: dict[str, np.ndarray] = {}
_SUBSET_ROWS_LOCK = threading.Lock()


def _imagenet100_rows(data, label_map, builder, tfds_split, cache_dir) -> np.ndarray:
  """Row numbers of ``data`` whose label is in the subset; computed once, cached on disk.

  Labels are read without decoding images (``SkipDecoding``), in batches; the result is memoised
  in this process and saved as ``.npy`` (a plain int64 array, no pickle) under ``cache_dir``.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
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
      labels_only = tfds.data_source(
          builder.name, split=tfds_split, data_dir=os.fspath(builder.data_dir_root),
          download=False, decoders={'image': tfds.decode.SkipDecoding()})
      labels = np.empty(len(labels_only), np.int64)
      chunk = 4096
      for start in range(0, len(labels), chunk):
        stop = min(start + chunk, len(labels))
        batch = labels_only.__getitems__(list(range(start, stop)))
        labels[start:stop] = [int(example['label']) for example in batch]
      rows = np.flatnonzero(label_map[labels] >= 0).astype(np.int64)
      _save_npy_atomically(cache_file, rows)
    _SUBSET_ROWS_MEMO[key] = rows
    return rows


def _save_npy_atomically(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes ``array`` to ``path`` via a temporary file and a rename; logs if not writable."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{uuid.uuid4().hex}.tmp')
    with open(tmp, 'wb') as f:
      np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning('could not cache %s (%s); it will be recomputed next time', path, e)


# ----------------------------------------------------------------------------------------------
# Image folders with a decoded cache

_CACHE_FORMAT = 1


def _decode_image(path: str, image_size: int) -> np.ndarray:
  """Decodes one file to uint8 RGB, resized and centre-cropped when ``image_size > 0``."""
  try:
    with Image.open(path) as image:
      if image_size:
        # Let the JPEG decoder downscale by a power of two first: far less work for big photos.
        image.draft('RGB', (image_size, image_size))
      image.load()  # decode now, inside the try: truncated files fail here
      if image.mode != 'RGB':
        image = image.convert('RGB')
      if image_size:
        return resize_and_center_crop(image, image_size)
      return np.asarray(image, dtype=np.uint8)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise CorruptImageError(path, f'{type(e).__name__}: {e}') from e


def _scan_split(split_dir: pathlib.Path, class_names: Sequence[str]):
  """Lists ``(relative path, label, size, mtime_ns)`` for every image of a split, sorted."""
  entries = []
  for label, class_name in enumerate(class_names):
    class_dir = split_dir / class_name
    if not class_dir.is_dir():
      continue  # this split lacks the class; labels still follow the union of all splits
    found = []
    with os.scandir(class_dir) as it:
      for entry in it:
        # Hidden files are skipped: e.g. macOS '._x.jpg' resource forks are not images.
        if (entry.is_file() and not entry.name.startswith('.')
            and entry.name.lower().endswith(IMAGE_EXTENSIONS)):
          stat = entry.stat()
          found.append((f'{class_name}/{entry.name}', label, stat.st_size, stat.st_mtime_ns))
    if not found:
      raise ValueError(f'class folder {class_dir} holds no images; expected at least one file '
                       f'ending in {"/".join(IMAGE_EXTENSIONS)} (remove the folder or add images)')
    entries.extend(sorted(found))
  return entries


class ImageFolderSource(ImageSource):
  """Images in ``root/<split>/<class>/*.{jpg,jpeg,png}``, decoded once into a cache.

  Class names are the sorted union of the class folders of all splits, so labels agree between
  splits. On first use every file is decoded into ``<cache_dir>/<split>-<size>-<fingerprint>/``
  by a thread pool: Pillow releases the GIL while it decodes and resizes large images, and threads
  write straight into the output memory map, with no copies between processes and no fork of a
  process that has started JAX. (Tiny images such as CIFAR's are bound by Python overhead
  instead: about 5,000 images/s on 2 cores, once.) The cache holds:

  * ``images.npy``: uint8 ``[N, H, W, 3]``, read back as a read-only memory map;
  * ``labels.npy``: int32 ``[N]``;
  * ``index.json``: classes, files, image shape, skipped files and their errors.

  Why ``.npy`` memory maps rather than ArrayRecord: decoded pixels need no per-record
  deserialisation, a read is a slice of the page cache (an epoch is not bound by decoding or
  parsing), worker processes share the pages, and NumPy writes and reads them with no extra
  dependency. The price is raw-pixel disk use (N*H*W*3 bytes: 150 MB for CIFAR-10's training set;
  use TFDS or a smaller ``image_size`` for ImageNet-scale folders).

  The cache is written into a temporary directory and renamed into place, so a reader never sees
  half a cache. The fingerprint covers the class names, every file's path, size and mtime, and
  ``image_size``: any change to the files makes a new cache (stale ones are removed).
  """

  def __init__(self, root: str | os.PathLike[str], split: str, *, image_size: int = 0,
               cache_dir: str | os.PathLike[str] | None = None, skip_corrupt: bool = False,
               decode_workers: int | None = None):
    root = pathlib.Path(root).expanduser()
    layout = 'expected <root>/<split>/<class>/*.jpg|*.jpeg|*.png'
    if not root.is_dir():
      raise FileNotFoundError(f'image folder root {root} does not exist ({layout})')
    splits = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith('.'))
    if not splits:
      raise ValueError(f'image folder root {root} has no split folders ({layout})')
    _check_split(split, splits, f'image folder {root}')
    class_names = sorted({c.name for s in splits for c in (root / s).iterdir()
                          if c.is_dir() and not c.name.startswith('.')})
    if not any((root / split / c).is_dir() for c in class_names):
      raise ValueError(f'split folder {root / split} has no class folders ({layout})')
    entries = _scan_split(root / split, class_names)

    self.name, self.split = 'image_folder', split
    self.root = root
    self.class_names = tuple(class_names)
    self.num_classes = len(class_names)
    self._image_size = int(image_size)
    self._skip_corrupt = bool(skip_corrupt)
    self._decode_workers = decode_workers or os.cpu_count() or 1
    size_tag = f'{self._image_size}px' if self._image_size else 'native'
    fingerprint = hashlib.sha256(json.dumps(
        [_CACHE_FORMAT, self._image_size, class_names, entries]).encode()).hexdigest()[:16]
    self.cache_root = (pathlib.Path(cache_dir).expanduser() if cache_dir
                       else root.parent / f'{root.name}.glf_jax_cache')
    self.cache_path = self.cache_root / f'{split}-{size_tag}-{fingerprint}'
    self.cache_built = False  # True when this call decoded the files (no usable cache)

    if not self._cache_is_complete():
      self._build_cache(entries)
      self.cache_built = True
    self._remove_stale_caches(f'{split}-{size_tag}-')
    self._open_cache()

  # -- reading

  def __len__(self) -> int:
    return len(self._labels)

  def _read(self, index):
    return {'image': self._images[index], 'label': self._labels[index]}

  def _open_cache(self) -> None:
    with open(self.cache_path / 'index.json', encoding='utf-8') as f:
      self.index = json.load(f)
    if self.index['skipped'] and not self._skip_corrupt:
      first = self.index['skipped'][0]
      raise CorruptImageError(self.root / self.split / first['file'],
                              f'{first["error"]} (set data.skip_corrupt=True to skip it)')
    self.num_skipped = len(self.index['skipped'])
    # A plain ndarray view of the memory map: indexing it costs no memmap bookkeeping.
    self._images = np.load(self.cache_path / 'images.npy', mmap_mode='r').view(np.ndarray)
    self._labels = np.load(self.cache_path / 'labels.npy', allow_pickle=False)
    self.image_shape = tuple(self._images.shape[1:])

  def __getstate__(self):
    # Worker processes reopen the memory map instead of receiving a copy of the pixels.
    state = dict(self.__dict__)
    state.pop('_images')
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._images = np.load(self.cache_path / 'images.npy', mmap_mode='r').view(np.ndarray)

  # -- building

  def _cache_is_complete(self) -> bool:
    return all((self.cache_path / f).is_file() for f in ('index.json', 'images.npy',
                                                          'labels.npy'))

  def _remove_stale_caches(self, prefix: str) -> None:
    if not self.cache_root.is_dir():
      return
    for old in self.cache_root.iterdir():
      if old.name.startswith(prefix) and old != self.cache_path:
        logging.info('removing stale image cache %s', old)
        shutil.rmtree(old, ignore_errors=True)

  def _build_cache(self, entries) -> None:
    split_dir = self.root / self.split
    paths = [os.fspath(split_dir / rel) for rel, _, _, _ in entries]
    logging.info('decoding %d images of %s into %s', len(paths), split_dir, self.cache_path)
    self.cache_root.mkdir(parents=True, exist_ok=True)
    tmp = self.cache_root / f'.tmp-{self.cache_path.name}-{uuid.uuid4().hex[:8]}'
    tmp.mkdir()
    try:
      images_file = tmp / 'images.npy'
      kept, skipped, shape = self._decode_all(paths, images_file)
      labels = np.array([entries[i][1] for i in kept], np.int32)
      np.save(tmp / 'labels.npy', labels, allow_pickle=False)
      index = {
          'format': _CACHE_FORMAT,
          'root': os.fspath(self.root),
          'split': self.split,
          'image_size': self._image_size,
          'image_shape': list(shape),
          'num_images': len(kept),
          'class_names': list(self.class_names),
          'files': [entries[i][0] for i in kept],
          'skipped': [{'file': entries[i][0], 'error': err} for i, err in skipped],
          'created': datetime.datetime.now(datetime.timezone.utc).isoformat(),
      }
      with open(tmp / 'index.json', 'w', encoding='utf-8') as f:
        json.dump(index, f)
      try:
        os.rename(tmp, self.cache_path)  # atomic: readers see all of the cache or none of it
      except OSError:
        if not self._cache_is_complete():  # not a concurrent builder that got there first
          raise
    finally:
      shutil.rmtree(tmp, ignore_errors=True)

  def _decode_all(self, paths: Sequence[str], images_file: pathlib.Path):
    """Decodes ``paths`` into ``images_file``; returns (kept rows, [(row, error)], shape)."""
    errors: dict[int, str] = {}
    first, shape = 0, None
    # The first decodable image fixes [H, W, 3] when sizes are kept as they are.
    while shape is None and first < len(paths):
      try:
        shape = _decode_image(paths[first], self._image_size).shape
      except CorruptImageError as e:
        self._on_corrupt(e)
        errors[first] = str(e)
        first += 1
    if shape is None:
      raise ValueError(f'no decodable image in {self.root / self.split}')
    images = np.lib.format.open_memmap(images_file, mode='w+', dtype=np.uint8,
                                       shape=(len(paths), *shape))

    def decode_rows(rows: range) -> dict[int, str]:
      failed = {}
      for row in rows:
        try:
          image = _decode_image(paths[row], self._image_size)
        except CorruptImageError as e:
          self._on_corrupt(e)
          failed[row] = str(e)
          continue
        if image.shape != shape:
          raise ValueError(
              f'image {paths[row]} has shape {image.shape}, but {paths[first]} has {shape}; '
              'set data.image_size to resize all images to one size')
        images[row] = image
      return failed

    chunk = 256
    chunks = [range(s, min(s + chunk, len(paths))) for s in range(first, len(paths), chunk)]
    done = 0
    with concurrent.futures.ThreadPoolExecutor(self._decode_workers) as pool:
      futures = [pool.submit(decode_rows, rows) for rows in chunks]
      try:
        for future in concurrent.futures.as_completed(futures):
          errors.update(future.result())
          done += 1
          if done % max(1, len(chunks) // 10) == 0:
            logging.info('decoded %d / %d chunks', done, len(chunks))
      except BaseException:
        for future in futures:
          future.cancel()
        raise
    images.flush()
    kept = [row for row in range(len(paths)) if row not in errors]
    if errors:
      logging.warning('skipped %d corrupt image(s) in %s, e.g. %s', len(errors),
                      self.root / self.split, errors[min(errors)])
      del images
      _compact_rows(images_file, kept)
    return kept, sorted(errors.items()), shape

  def _on_corrupt(self, error: CorruptImageError) -> None:
    if not self._skip_corrupt:
      raise error
    logging.warning('skipping corrupt image: %s', error)


def _compact_rows(images_file: pathlib.Path, kept: Sequence[int]) -> None:
  """Rewrites ``images_file`` keeping only the rows ``kept`` (in order)."""
  full = np.load(images_file, mmap_mode='r')
  compact_file = images_file.with_name('images.compact.npy')
  compact = np.lib.format.open_memmap(compact_file, mode='w+', dtype=np.uint8,
                                      shape=(len(kept), *full.shape[1:]))
  kept = np.asarray(kept, np.int64)
  for start in range(0, len(kept), 4096):
    compact[start:start + 4096] = full[kept[start:start + 4096]]
  compact.flush()
  del compact, full
  os.replace(compact_file, images_file)


# ----------------------------------------------------------------------------------------------
# Config


def default_data_config(name: str = 'digits') -> ml_collections.ConfigDict:
  """The ``config.data`` sub-tree for source ``name``, with that source's defaults.

  Fields: ``name``; ``data_dir`` (TFDS data directory; '' = ``$TFDS_DATA_DIR`` or TFDS's default);
  ``root`` (image folders); ``cache_dir`` ('' = next to ``root``, or ``<data_dir>/glf_jax_cache``
  for the ImageNet-100 index); ``image_size`` (0 = keep the images' size); ``skip_corrupt``.
  """
  if name not in SOURCE_NAMES:
    raise ValueError(f'unknown data source {name!r}; expected one of {list(SOURCE_NAMES)}')
  config = ml_collections.ConfigDict()
  config.name = name
  config.data_dir = ''
  config.root = ''
  config.cache_dir = ''
  config.image_size = _DEFAULT_IMAGE_SIZE.get(name, 0)
  config.skip_corrupt = False
  return config


def make_source(data_config: Any, split: str) -> ImageSource:
  """Builds the random-access source that ``data_config`` (``config.data``) names, for ``split``.

  Raises:
    ValueError: unknown name or split (the message lists the allowed values), a missing ``root``
      for image folders, or an unprepared TFDS dataset (``DatasetNotPreparedError``).
  """
  get = data_config.get
  name = get('name', 'digits')
  image_size = int(get('image_size', 0) or 0)
  if image_size < 0:
    raise ValueError(f'data.image_size must be >= 0 (0 keeps the size), got {image_size}')
  if name == 'digits':
    return DigitsSource(split, image_size=image_size)
  if name == 'image_folder':
    if not get('root', ''):
      raise ValueError('data.root must name the image folder (<root>/<split>/<class>/*.jpg) '
                       "when data.name='image_folder'")
    return ImageFolderSource(get('root'), split, image_size=image_size,
                             cache_dir=get('cache_dir', '') or None,
                             skip_corrupt=bool(get('skip_corrupt', False)))
  if name in _TFDS_BUILDERS:
    return TfdsSource(name, split, data_dir=get('data_dir', '') or None, image_size=image_size,
                      cache_dir=get('cache_dir', '') or None)
  raise ValueError(f'unknown data source {name!r}; expected one of {list(SOURCE_NAMES)}')
