"""`python -m glf_jax.main` on a TFDS dataset: the made CIFAR-10-sized images (tests/conftest.py)
written as a prepared TFDS `cifar10` (ArrayRecord) in a local data_dir, read back by the
registered builder, as a user's `tfds build cifar10` output would be. Pretrain a few steps,
evaluate, check summary.json."""

import io
import json
import sys

import numpy as np
from PIL import Image

from tests.conftest import CLASSES, run_child
from tests.test_data_sources import _prepare_tfds
from tests.test_train_loop import ROOT, _env


def _examples(root, split):
  examples = []
  for label, name in enumerate(CLASSES):
    for path in sorted((root / split / name).glob('*.jpg')):
      pixels = np.asarray(Image.open(path).convert('RGB'))
      buffer = io.BytesIO()
      Image.fromarray(pixels).save(buffer, format='PNG')  # TFDS cifar10 stores PNGs
      examples.append({'id': f'{split}_{path.stem}', 'label': label, 'image': buffer.getvalue()})
  return examples


def test_main_pretrains_and_evaluates_on_a_prepared_tfds_dataset(image_root, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = tfds.features.FeaturesDict({
      'id': tfds.features.Text(),
      'image': tfds.features.Image(shape=(32, 32, 3)),
      'label': tfds.features.ClassLabel(names=CLASSES),
  })
  data_dir = tmp_path / 'tensorflow_datasets'
  splits = {split: _examples(image_root, split) for split in ('train', 'test')}
  _prepare_tfds('cifar10', data_dir, features, splits)

  workdir = tmp_path / 'run'
  overrides = {
      'data.data_dir': data_dir, 'model.arch': 'resnet_tiny', 'model.projector_hidden_dim': 32,
      'model.projection_dim': 16, 'train.batch_size': 32, 'train.num_steps': 3,
      'eval.linear.epochs': 5, 'eval.alignment.examples': 32, 'eval.batch_size': 64,
      'eval.embedding_examples': 0,  # no t-SNE picture
      'optim.name': 'sgd', 'optim.base_learning_rate': 0.1,
  }
  env = _env()
  env.pop('TFDS_DATA_DIR', None)
  result = run_child(
      [sys.executable, '-m', 'glf_jax.main', '--config', 'configs/simclr.py',
       '--workdir', str(workdir), *[f'--config.{k}={v}' for k, v in overrides.items()]],
      cwd=ROOT, env=env)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

  summary = json.loads((workdir / 'summary.json').read_text())
  assert (summary['dataset'], summary['status'], summary['step']) == ('cifar10', 'finished', 3)
  # 400 train images at batch 32: 12 full steps per epoch.
  assert summary['total_steps'] == 3 and abs(summary['epochs'] - 3 / 12) < 1e-9
  pretrained = summary['pretrained']
  assert 0.0 <= pretrained['linear/top1'] <= pretrained['linear/top5'] <= 1.0
  assert np.isfinite(summary['last_metrics']['loss'])
