"""glf_jax.progress: plain lines by steps and by time, a tqdm bar on a terminal, an ETA that
ignores the first (compiling) step; and its users: the pretraining banner, decode-cache building,
feature extraction, the linear probe."""

import io
import re

import numpy as np
from PIL import Image
import tqdm

from glf_jax import config as config_lib
from glf_jax.runtime import devices
from glf_jax.runtime import progress
from glf_jax.data import sources
from glf_jax.evaluate import features, linear_probe
from glf_jax.train import pretrain


class FakeClock:
  """A clock the test moves by hand."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _positions(text):
  return [int(n) for n in re.findall(r'^step (\d+)/\d+', text, flags=re.M)]


def _plain(total, **kwargs):
  stream, clock = io.StringIO(), FakeClock()
  bar = progress.Progress(total, desc='step', unit='img', tty=False, enabled=True, stream=stream,
                          clock=clock, **kwargs)
  return bar, stream, clock


def test_plain_lines_every_few_steps_and_at_the_end():
  bar, stream, clock = _plain(10, every=3, interval_s=1e9)
  for n in range(1, 11):
    clock.now += 1.0
    bar.update(n, head='epoch 0.50', tail=lambda: 'loss 1.2345')
  bar.close()
  text = stream.getvalue()
  assert _positions(text) == [3, 6, 9, 10], text
  first = text.splitlines()[0]
  assert re.fullmatch(r'step 3/10  epoch 0\.50  [\d.]+ img/s  ETA \d:\d\d:\d\d  \|  loss 1\.2345',
                      first), first


def test_plain_lines_by_wall_time_when_steps_are_slow():
  bar, stream, clock = _plain(10, every=1000, interval_s=5.0)
  for n in range(1, 10):
    clock.now += 2.0
    bar.update(n)
  assert _positions(stream.getvalue()) == [3, 6, 9]  # at 6 s, 12 s, 18 s
  bar.close()  # the last position, once
  bar.close()
  assert _positions(stream.getvalue()) == [3, 6, 9]
  bar, stream, clock = _plain(10, every=1000, interval_s=5.0)
  for n in (1, 2):
    clock.now += 1.0
    bar.update(n)
  bar.close()  # an interrupted loop still ends with its last position
  assert _positions(stream.getvalue()) == [2]


def test_eta_ignores_the_first_compiling_step():
  bar, stream, clock = _plain(10, every=1)
  clock.now = 100.0  # step 1: XLA compiles for 100 s
  bar.update(1)
  assert bar.rate() is None and bar.eta() is None
  assert 'step 1/10  - img/s  ETA -:--:--' in stream.getvalue()
  for n in (2, 3):
    clock.now += 1.0  # then 1 s per step
    bar.update(n)
  assert bar.rate() == 1.0 and bar.eta() == 7.0
  assert stream.getvalue().splitlines()[-1] == 'step 3/10  1.0 img/s  ETA 0:00:07'


def test_rate_counts_scale_and_starts_at_a_resumed_step():
  bar, _, clock = _plain(100, initial=40, scale=64)
  clock.now = 50.0
  bar.update(41)
  clock.now = 54.0
  bar.update(45)
  assert bar.rate() == 64.0 and bar.eta() == 55 * 64 / 64.0


def test_terminal_mode_draws_a_tqdm_bar_not_lines():
  stream = io.StringIO()
  bar = progress.Progress(8, desc='step', unit='img', tty=True, enabled=True, stream=stream)
  assert isinstance(bar.bar, tqdm.tqdm)
  for n in range(1, 9):
    bar.update(n, tail='loss 0.5')
  bar.write('a message')
  bar.close()
  text = stream.getvalue()
  assert '\r' in text and '8/8' in text and '100%' in text and 'loss 0.5' in text, text
  assert 'a message' in text and not _positions(text)


def test_terminal_is_detected_from_the_stream_and_other_processes_stay_silent():
  class Terminal(io.StringIO):
    def isatty(self):
      return True

  drawn = progress.Progress(3, desc='x', enabled=True, stream=Terminal())
  assert drawn.tty and drawn.bar is not None
  drawn.close()
  plain = progress.Progress(3, desc='x', enabled=True, stream=io.StringIO())
  assert not plain.tty and plain.bar is None
  stream = io.StringIO()
  silent = progress.Progress(3, desc='x', enabled=False, stream=stream, tty=True)
  assert silent.bar is None
  for n in (1, 2, 3):
    silent.update(n)
  silent.write('hidden')
  silent.close()
  assert stream.getvalue() == ''


def test_banner_states_method_data_model_devices_batch_and_resume_point():
  config = config_lib.base_config('simclr+adc', 'digits', 'resnet_tiny')
  config.train.batch_size = 64
  mesh = devices.make_mesh()
  kwargs = dict(num_examples=1347, num_classes=10, image_shape=(16, 16, 3), mesh=mesh,
                steps_per_epoch=21, total_steps=210, workdir='/runs/a')
  text = pretrain.banner(config, step=0, **kwargs)
  for fact in ('simclr+adc', 'digits', '1347 training images', '10 classes', '16x16x3',
               'resnet_tiny', f'{mesh.size} devices', '1 process', 'mesh data=', 'global batch 64',
               '21 steps/epoch', '210 steps (10.0 epochs)', '/runs/a', 'starting from step 0'):
    assert fact in text, (fact, text)
  assert len(text.splitlines()) <= 5
  config.data.image_size = 12  # the views follow: the network sees 12 px
  assert '16x16x3, network input 12x12' in pretrain.banner(config, step=0, **kwargs)
  assert 'resumed from step 42' in pretrain.banner(config, step=42, **kwargs)
  assert 'already finished' in pretrain.banner(config, step=210, **kwargs)


def _image_folder(root, count):
  rng = np.random.default_rng(0)
  for i in range(count):
    path = root / 'train' / ('cat' if i % 2 else 'dog') / f'{i:03d}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


def test_decode_cache_building_is_announced_and_shows_progress(tmp_path, capsys):
  _image_folder(tmp_path / 'images', 6)
  source = sources.ImageFolderSource(tmp_path / 'images', 'train')
  assert source.cache_built
  out = capsys.readouterr().out
  assert 'decoding 6 images of' in out and 'decoding images 6/6' in out, out
  sources.ImageFolderSource(tmp_path / 'images', 'train')  # the cache is there: silent
  assert 'decoding' not in capsys.readouterr().out


def test_feature_extraction_and_linear_probe_show_progress(capsys):
  data = [{'image': np.full((4, 4, 3), i, np.uint8), 'label': i % 2} for i in range(10)]
  x, _ = features.extract_features(lambda images: images.reshape(len(images), -1)[:, :3],
                                   data, batch_size=4)
  assert x.shape == (10, 3)
  assert 'features 10/10' in capsys.readouterr().out
  rng = np.random.default_rng(0)
  points = rng.standard_normal((40, 3)).astype(np.float32)
  labels = (points[:, 0] > 0).astype(np.int32)
  linear_probe.linear_probe(points, labels, points, labels, num_classes=2, epochs=4,
                            batch_size=8)
  assert 'linear probe 4/4' in capsys.readouterr().out
