"""scikit-learn's 8x8 digits as a source: shipped with scikit-learn, so it works offline."""

from __future__ import annotations

import numpy as np

from glf_jax.data.datasets import DATASETS
from glf_jax.data.source_base import check_split
from glf_jax.data.source_base import ImageSource
from glf_jax.data.source_base import resize_and_center_crop


class DigitsSource(ImageSource):
  """scikit-learn's 1,797 8x8 digits as uint8 RGB: the embedded, offline default.

  Pixel values 0..16 are scaled to 0..255 and repeated to three channels. The split is a fixed,
  stratified 1,347 / 450 train / test split (seed 0), the same on every machine.
  ``image_size > 0`` resizes the images (``resize_and_center_crop``); 0 keeps 8x8.
  """

  TEST_SIZE = 450
  SPLIT_SEED = 0
  SPLITS = tuple(DATASETS['digits'].splits)

  def __init__(self, split: str = 'train', image_size: int = 0):
    from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
    from sklearn import model_selection  # pylint: disable=g-import-not-at-top
    check_split(split, self.SPLITS, 'digits')
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

  def _read_rows(self, rows):
    return {'image': self._images[rows], 'label': self._labels[rows]}
