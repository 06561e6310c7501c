"""What a user sees when something is wrong: one ``error: ...`` line with the fix where it is known.

Command-line mistakes (unknown keys, bad values, a missing config file, an objective switched to
one the config was not built for), data mistakes (a missing evaluation split, ``data.root`` for
data that ignores it, corrupt and 16-bit images), a full disk while checkpointing, and the log
noise that looks like trouble (orbax's read-only notice, TFDS's missing-folder warning).
"""

import errno
import logging
import os
import pathlib
import sys
import time

from absl import logging as absl_logging
import jax.numpy as jnp
import numpy as np
from orbax.checkpoint._src.handlers import json_checkpoint_handler
from PIL import Image
import pytest

from glf_jax.run import checkpoint
from glf_jax import config as config_lib
from glf_jax import flag_errors
from glf_jax import main
from glf_jax.data import decode_cache
from glf_jax.data import sources
from glf_jax.data import tfds_source
from tests.conftest import run_child

# Orbax's failed writes leave coroutines that complain once their event loop is closed: noise.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / 'configs' / 'quickstart.py'


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT))
  env.pop('GLF_JAX_TRACEBACK', None)
  env.update(extra)
  cache = env.get('GLF_JAX_TEST_CACHE', str(ROOT / '.jax_cache'))
  env.setdefault('JAX_COMPILATION_CACHE_DIR', cache)  # the subprocess's compilations, reused
  return env


def _cli(*args, env=None):
  return run_child([sys.executable, '-m', 'glf_jax.main', *map(str, args)], cwd=ROOT,
                   env=env or _env())


def _one_error(result) -> str:
  """The single ``error:`` line of a failed run (asserting there is exactly one, no traceback)."""
  assert result.returncode != 0, result.stdout + result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines() if 'error: ' in line.lower()]
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  return lines[0]


def _quickstart():
  return config_lib.tiny(config_lib.base_config('simclr+adc', 'digits', 'resnet_tiny'))


# ---------------------------------------------------------------------------------------------
# The command line: one line, printed once, exit status 1, no traceback


@pytest.mark.slow  # subprocesses or a trained run (5-10 s each): in CI, not in the fast tier
@pytest.mark.parametrize('args,expected', [
    (['--config.train.batch_sise=64'],
     'error: unknown config key train.batch_sise; did you mean train.batch_size?'),
    (['--config.train.batch_size=abc'],
     "error: --config.train.batch_size=abc: train.batch_size takes an int, got 'abc'"),
    (['--config.objective.name=balanced+adc', '--config.objective.balanced.alpha=8'],
     'configs/balanced.py'),
])
def test_flag_mistakes_are_one_line(args, expected, tmp_path):
  result = _cli('--config', QUICKSTART, '--workdir', tmp_path / 'run', *args)
  line = _one_error(result)
  assert line == expected or (not expected.startswith('error: ') and expected in line), line
  assert result.stderr.strip() == line  # nothing else: no absl 'E...' copy of it
  assert not (tmp_path / 'run').exists()


def test_a_missing_workdir_is_reported_before_the_config_is_loaded():
  # configs/nope.py does not exist: the message shows that nothing was loaded before it.
  result = _cli('--config', 'configs/nope.py', '--config.train.batch_size=8')
  assert _one_error(result) == 'error: --workdir is required' == result.stderr.strip()
  assert flag_errors.missing_required(['m', '--config=a.py', '--workdir', 'w'],
                                      main.REQUIRED_FLAGS) is None
  assert flag_errors.missing_required(['m', '--workdir=w'], main.REQUIRED_FLAGS) == 'config'
  assert flag_errors.missing_required(['m', '--helpfull'], main.REQUIRED_FLAGS) is None


def test_a_workdir_url_that_cannot_hold_a_run_is_refused_before_anything_is_written():
  # gs:// workdirs work (tests/test_url_workdir.py); s3:// cannot hold orbax's checkpoints, and
  # no backend serves ftp://: refused, one line, nothing made (the child runs in the repository's
  # root, where the local file API would have made ./s3:/bucket/run).
  for url, why in (('s3://bucket/run', 'orbax cannot write checkpoints there'),
                   ('ftp://host/run', 'use gs://')):
    result = _cli('--config', QUICKSTART, '--workdir', url, '--config.train.num_steps=2')
    line = _one_error(result)
    scheme = url.split('://', 1)[0]
    assert line.startswith(f'error: --workdir {url}: URL scheme {scheme}:// is not supported'), line
    assert why in line and not (ROOT / f'{scheme}:').exists()


def test_an_evaluation_without_its_checkpoint_dir_names_the_key(tmp_path):
  result = _cli('--config', 'configs/linear_probe.py', '--workdir', tmp_path / 'probe')
  line = _one_error(result)
  assert line.startswith('error: eval.checkpoint_dir is not set, and the workdir '
                         f'{tmp_path / "probe"} holds no checkpoint'), line
  assert '--config.eval.checkpoint_dir' in line


def test_missing_config_file_names_the_available_ones(tmp_path):
  result = _cli('--config', 'configs/nope.py', '--workdir', tmp_path / 'run',
                '--config.train.batch_size=8')
  line = _one_error(result)
  assert 'configs/nope.py not found' in line and 'quickstart.py' in line and 'byol.py' in line


@pytest.mark.slow  # subprocesses or a trained run (5-10 s each): in CI, not in the fast tier
def test_traceback_on_request(tmp_path):
  result = _cli('--config', QUICKSTART, '--workdir', tmp_path, '--config.train.batch_sise=64',
                env=_env(GLF_JAX_TRACEBACK='1'))
  assert result.returncode != 0 and 'Traceback' in result.stderr


@pytest.mark.slow  # 10-25 s (runs, subprocesses): in CI, not in the fast tier
def test_run_time_config_error_is_one_line_and_leaves_no_workdir(tmp_path):
  # objective.name switched to a method whose settings and heads the config lacks.
  result = _cli('--config', QUICKSTART, '--workdir', tmp_path / 'run',
                '--config.objective.name=byol', '--config.train.num_steps=2')
  line = _one_error(result)
  assert 'configs/byol.py' in line and 'predictor head' in line
  assert not (tmp_path / 'run').exists()
  a_file = tmp_path / 'a_file'
  a_file.write_text('user data')
  line = _one_error(_cli('--config', QUICKSTART, '--workdir', a_file,
                         '--config.train.num_steps=2'))
  assert f'{a_file} is a file' in line and a_file.read_text() == 'user data'


@pytest.mark.slow  # subprocesses or a trained run (5-10 s each): in CI, not in the fast tier
def test_show_config_prints_every_key_and_touches_nothing(tmp_path):
  result = _cli('--config', QUICKSTART, '--workdir', tmp_path / 'run',
                '--config.mode=show_config', '--config.train.batch_size=64')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert 'train.batch_size: 64' in lines and "objective.name: 'simclr+adc'" in lines
  assert 'data.root: None' in lines and 'augment.view1.crop_scale: (0.5, 1.0)' in lines
  keys = [line.split(': ', 1)[0] for line in lines]
  assert keys == sorted(keys) and len(keys) > 100
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow  # a subprocess
def test_one_image_size_on_the_command_line_moves_the_views_and_the_evaluation():
  result = _cli('--config', 'configs/simclr.py', '--workdir', 'unused', '--config.mode=show_config',
                '--config.data.image_size=16')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  for key in ('data.image_size', 'augment.view1.image_size', 'augment.view2.image_size',
              'eval.transform.image_size'):
    assert f'{key}: 16' in lines, key


def test_modes_include_show_config_and_plot():
  for mode in ('show_config', 'plot'):
    assert mode in config_lib.MODES
    config = _quickstart()
    config.mode = mode
    config_lib.validate(config)


def test_steps_per_call_must_be_a_positive_int():
  for bad in (0, -2):  # (a float is refused by the config itself: the key is an int)
    config = _quickstart()
    config.train.steps_per_call = bad
    with pytest.raises(ValueError, match='train.steps_per_call'):
      config_lib.validate(config)
  config = _quickstart()
  config.train.steps_per_call = 8
  config_lib.validate(config)


def test_unknown_key_messages():
  config = _quickstart()
  assert flag_errors.unknown_key_message(config, 'train.batch_size') is None
  assert flag_errors.unknown_key_message(config, 'train.batch_sise') == (
      'unknown config key train.batch_sise; did you mean train.batch_size?')
  message = flag_errors.unknown_key_message(config, 'objective.balanced.alpha')
  assert 'configs/balanced.py' in message and "'balanced'" in message
  message = flag_errors.unknown_key_message(config, 'method.ema_base')
  assert 'byol' in message and 'configs/byol.py' in message
  assert 'is a value' in flag_errors.unknown_key_message(config, 'train.batch_size.x')
  message = flag_errors.unknown_key_message(config, 'objective.adc.zzz')
  assert 'objective.adc has the keys' in message and 'upsilon' in message


def test_flag_error_message_of_a_bad_value_and_a_bad_config_argument():
  from absl import flags  # pylint: disable=g-import-not-at-top
  argv = ['prog', '--config', str(QUICKSTART), '--config.train.eval_after=maybe']
  error = flags.IllegalFlagValueError(
      "flag --config.train.eval_after=maybe: ('Non-boolean argument to boolean flag', 'maybe')")
  assert flag_errors.flag_error_message(error, argv) == (
      "--config.train.eval_after=maybe: train.eval_after takes a bool (True or False), got "
      "'maybe'")
  try:
    try:
      config_lib.parse_config_arg('cifar7', choices=dict(dataset=('cifar10',)),
                                  defaults=dict(dataset='cifar10'))
    except ValueError as inner:
      raise ValueError('Error whilst parsing config file:\n\nTraceback ...') from inner
  except ValueError as wrapped:
    error = flags.IllegalFlagValueError(f'flag --config=configs/simclr.py:cifar7: {wrapped}')
    error.__context__ = wrapped
  message = flag_errors.flag_error_message(error, ['prog', '--config=configs/simclr.py:cifar7'])
  assert message.startswith('config configs/simclr.py:cifar7: ValueError: unknown config '
                            "argument 'cifar7'") and '\n' not in message


def test_missing_config_message_lists_the_repository_configs():
  message = flag_errors.missing_config_message('elsewhere/nope.py:arg')
  assert message.startswith('config file elsewhere/nope.py not found')
  assert 'simclr.py' in message and 'quickstart.py' in message


# ---------------------------------------------------------------------------------------------
# Switching the objective: the config to start from


@pytest.mark.parametrize('name,needs', [
    ('byol', ['configs/byol.py', 'ema_base', 'predictor head']),
    ('byol+adc', ['configs/byol.py:adc']),
    ('simsiam', ['configs/simsiam.py', '--config.model.predictor_layers=2',
                 '--config.model.predictor_hidden_dim=512']),
    ('swav', ['configs/swav.py', 'prototypes']),
])
def test_switching_to_a_method_the_config_lacks_names_the_config(name, needs):
  config = _quickstart()
  config.model.predictor_layers = 0
  config.objective.name = name
  with pytest.raises(ValueError) as info:
    config_lib.validate(config)
  for text in needs:
    assert text in str(info.value)
  for text in needs:
    assert os.path.exists(ROOT / text.split(':')[0]) or not text.startswith('configs/')


def test_switching_within_a_family_just_works():
  config = _quickstart()
  config.objective.name = 'balanced+adc'  # the term's defaults when the config has none
  config_lib.validate(config)
  byol = config_lib.base_config('byol', 'digits')
  byol.objective.name = 'simclr'
  with pytest.raises(ValueError, match=r"settings \['ema_base'\] of another method.*"
                                       r'configs/simclr.py'):
    config_lib.validate(byol)


# ---------------------------------------------------------------------------------------------
# Data: roots that would be ignored, the evaluation split, corrupt and 16-bit images


def test_data_root_for_other_data_is_refused():
  config = _quickstart()
  config.data.root = '/somewhere/images'
  with pytest.raises(ValueError, match='--config.data.name=image_folder'):
    config_lib.validate(config)
  config = _quickstart()
  config.eval.data.root = '/somewhere/images'
  with pytest.raises(ValueError, match='--config.eval.data.name=image_folder'):
    config_lib.validate(config)


def _image_folder(root, splits, size=(8, 8)):
  rng = np.random.default_rng(0)
  for split in splits:
    for label in ('a', 'b'):
      for i in range(2):
        path = root / split / label / f'{i}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
  return root


def test_missing_test_split_is_found_before_training_with_the_flag(tmp_path):
  root = _image_folder(tmp_path / 'images', ('train', 'val'))
  config = _quickstart()
  config.data.name, config.data.root = 'image_folder', str(root)
  with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train', 'val'\].*"
                                       r'--config.eval.test_split=val'):
    config_lib.validate(config)
  config.eval.test_split = 'val'
  config_lib.validate(config)
  config.eval.test_split = 'test'
  config.train.eval_after = False  # no evaluation: no check
  config_lib.validate(config)
  # The source itself says it too (e.g. mode=eval on such a folder).
  with pytest.raises(ValueError, match='--config.eval.test_split=val'):
    sources.ImageFolderSource(root, 'test', cache_dir=tmp_path / 'cache')


def test_a_class_only_in_the_test_split_is_refused_naming_it(tmp_path):
  root = _image_folder(tmp_path / 'images', ('train', 'test'))
  extra = root / 'test' / 'zebra' / '0.png'
  extra.parent.mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(extra)
  config = _quickstart()
  config.data.name, config.data.root = 'image_folder', str(root)
  expected = (rf"image folder {root}: the 'test' split has 1 class\(es\) that the 'train' split "
              r"has no example of \('zebra'\)")
  with pytest.raises(ValueError, match=expected):  # before training
    config_lib.validate(config)
  config.train.eval_after = False
  config_lib.validate(config)
  # An evaluation mode (the run's own data, not checked before) refuses it as it builds its data.
  train, test = (sources.ImageFolderSource(root, s, cache_dir=tmp_path / 'cache')
                 for s in ('train', 'test'))
  assert train.num_classes == test.num_classes == 3  # labels follow the union of the splits
  with pytest.raises(ValueError, match=expected):
    sources.check_shared_classes(train, test, f'image folder {root}')
  sources.check_shared_classes(test, train, 'fine: a class not tested is no error')


def test_corrupt_image_errors_name_the_flag_once_and_count_the_skipped(tmp_path):
  root = _image_folder(tmp_path / 'images', ('train',))
  (root / 'train' / 'a' / 'bad.png').write_bytes(b'not a png')
  with pytest.raises(sources.CorruptImageError) as info:
    sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache')
  message = str(info.value)
  assert '--config.data.skip_corrupt=True' in message and message.count('cannot decode') == 1
  skipping = sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache',
                                       skip_corrupt=True)
  assert skipping.num_skipped == 1 and skipping.skipped_files == ('a/bad.png',)
  assert len(skipping) == 4
  # The cache built while skipping, opened strictly: the recorded error, not repeated.
  with pytest.raises(sources.CorruptImageError) as info:
    sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache')
  message = str(info.value)
  assert message.count('cannot decode image file') == 1, message
  assert 'bad.png' in message and '--config.data.skip_corrupt=True' in message
  # Other sources skip nothing.
  assert sources.DigitsSource('test').num_skipped == 0


def test_a_symlink_loop_among_the_images_is_a_corrupt_file_naming_it(tmp_path):
  root = _image_folder(tmp_path / 'images', ('train',))
  loop = root / 'train' / 'a' / 'loop.png'
  loop.symlink_to(loop)
  with pytest.raises(sources.CorruptImageError, match=rf'cannot decode image file {loop}: '
                     r'.*Too many levels of symbolic links.*--config.data.skip_corrupt=True'):
    sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache')
  skipping = sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache',
                                       skip_corrupt=True)
  assert skipping.skipped_files == ('a/loop.png',) and len(skipping) == 4


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
  values = np.linspace(0, 63000, 16 * 16).reshape(16, 16).astype(np.uint16)
  path = tmp_path / 'deep.png'
  Image.fromarray(values).save(path)
  with Image.open(path) as image:
    assert image.mode.startswith('I;16')  # PIL wrote and reads it as 16-bit
    np.testing.assert_array_equal(np.asarray(image), values)
  pixels = decode_cache.decode_image(str(path), 0)
  assert pixels.dtype == np.uint8 and pixels.shape == (16, 16, 3)
  expected = np.round(values / 257).astype(np.uint8)
  np.testing.assert_array_equal(pixels[..., 0], expected)
  assert abs(pixels.mean() - values.mean() / 257) < 0.5  # not ~254 (clipped at 255)
  assert decode_cache.decode_image(str(path), 8).shape == (8, 8, 3)


def test_32_bit_and_float_greyscale():
  image = Image.fromarray(np.array([[0, 65535], [257, 32896]], np.int32))
  assert image.mode == 'I'
  np.testing.assert_array_equal(np.asarray(decode_cache._to_8bit(image)), [[0, 255], [1, 128]])
  with pytest.raises(ValueError, match='only 0..65535'):
    decode_cache._to_8bit(Image.fromarray(np.array([[0, 70000]], np.int32)))
  with pytest.raises(ValueError, match='mode F'):
    decode_cache._to_8bit(Image.fromarray(np.zeros((2, 2), np.float32)))


# ---------------------------------------------------------------------------------------------
# A full disk while checkpointing


def _state(seed):
  return {'w': jnp.full((4, 4), float(seed)), 'step': jnp.asarray(seed, jnp.int32)}


_LONG_IO_ERROR = ('Error writing "state/ocdbt.process_0/d/1234" to local file: ' + 'context ' * 80 +
                  '[source locations=...] [OS error 28: No space left on device]')


def _fail_json_writes(monkeypatch, error):
  async def fail(self, x, directory):
    del self, x, directory
    raise error
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn', fail)


@pytest.mark.parametrize('async_save', [False, True])
def test_full_disk_hidden_in_an_io_error_is_named_at_the_failed_save(tmp_path, monkeypatch,
                                                                      async_save):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, async_save=async_save)
  assert ckpt.save(1, _state(1), data_state={})
  ckpt.wait_until_finished()
  _fail_json_writes(monkeypatch, OSError(errno.EIO, _LONG_IO_ERROR))
  with pytest.raises(checkpoint.CheckpointError) as info:
    ckpt.save(2, _state(2), data_state={})
    if async_save:
      while True:  # reported as soon as the write fails, with no next save; no limit but the
        ckpt.check_for_errors()  # suite's hang timeout: a slow machine only takes longer
        time.sleep(0.05)
  message = str(info.value)
  assert info.value.errno == errno.ENOSPC
  assert message.startswith(f'no space left on {tmp_path}'), message
  assert 'step 2' in message and 'No space left on device' in message
  assert 'steps [1]) are intact' in message
  monkeypatch.undo()
  ckpt.close()


def test_short_errors_keep_the_os_reason():
  text = checkpoint._short(OSError(errno.EIO, _LONG_IO_ERROR))
  assert len(text) < 600 and text.endswith('(No space left on device)')
  cut = 'x' * (checkpoint._ERROR_CHARS - len('OSError: ') - 4) + 'File too large, and more'
  assert checkpoint._short(OSError(cut)).endswith('... (File too large)')  # the cut went through it
  assert checkpoint._short(ValueError('short')) == 'ValueError: short'
  assert checkpoint._full_disk_errno(RuntimeError('x')) is None
  wrapped = RuntimeError('background save failed')
  wrapped.__cause__ = OSError(errno.ENOSPC, 'No space left on device')
  assert checkpoint._full_disk_errno(wrapped) == errno.ENOSPC


def _limited_file_size(limit_bytes):
  """A child's file size limit: writes past it fail (EFBIG) as on a full disk, not fatally."""
  def apply():
    import resource  # pylint: disable=g-import-not-at-top
    import signal  # pylint: disable=g-import-not-at-top
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
  return apply


@pytest.mark.slow  # a training subprocess (~30 s)
def test_a_run_whose_checkpoint_writes_fail_ends_with_one_line(tmp_path):
  # The checkpoint's array files (~250 kB) cannot be written, as on a full disk; orbax's writer,
  # commit and finalize threads logged their tracebacks of it (a full disk: 545 lines before).
  result = run_child(
      [sys.executable, '-m', 'glf_jax.main', '--config', str(QUICKSTART), '--workdir',
       str(tmp_path / 'run'), '--config.train.num_steps=4', '--config.train.batch_size=64',
       '--config.checkpoint.every_steps=2', '--config.train.eval_after=False',
       # No persistent compilation cache: its entries would be cut at the limit too, and a
       # truncated entry read by a later test warns.
       '--config.compilation_cache_dir=none'],
      cwd=ROOT, env=_env(JAX_ENABLE_COMPILATION_CACHE='false'),
      preexec_fn=_limited_file_size(100_000))
  line = _one_error(result)
  assert line.startswith(f'error: saving checkpoint step 2 to {tmp_path / "run"}/checkpoints '
                         'failed'), line
  assert result.stderr.strip() == line


def test_noise_of_a_failed_save_is_dropped_and_nothing_else():
  import asyncio  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as e:
    closed = types.SimpleNamespace(exc_value=e, exc_traceback=e.__traceback__)
  other = RuntimeError('Event loop is closed')  # the same words from elsewhere
  assert checkpoint._is_closed_loop_callback(closed)
  assert not checkpoint._is_closed_loop_callback(types.SimpleNamespace(exc_value=other,
                                                                       exc_traceback=None))
  dropped = checkpoint._SaveFailureLogFilter()
  for message in ('[process=%d][thread=%s][operation_id=%s] _SignalingThread.run() raised an '
                  'exception: %s',
                  '[process=0] Failed to run 5 Handler Commit operations or the Commit callback in '
                  'background save thread, directory: /x',
                  '[process=%s][thread=%s][step=%s][wait_until_finished] Save Finalize thread (%s) '
                  'failed.'):
    assert not dropped.filter(logging.makeLogRecord({'msg': message}))
  assert dropped.filter(logging.makeLogRecord({'msg': 'any other error'}))


# ---------------------------------------------------------------------------------------------
# Noise that looks like trouble


class _Records(logging.Handler):

  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_read_only_and_missing_tfds_folder_notices_are_dropped(tmp_path):
  records = _Records()
  logger = absl_logging.get_absl_logger()
  logger.addHandler(records)
  try:
    with checkpoint.Checkpointer(str(tmp_path), async_save=False) as ckpt:
      ckpt.save(1, _state(1), data_state={})
    assert checkpoint.read_meta(str(tmp_path))['step'] == 1  # opens a read-only manager
    with checkpoint.Checkpointer(str(tmp_path), read_only=True) as ckpt:
      assert ckpt.latest_step() == 1
    tfds_source._quiet_missing_variant_folders()
    missing, existing = tmp_path / 'nowhere' / '1.0.0', tmp_path
    absl_logging.warning('Variant folder %s has no %s', missing, 'dataset_info.json')
    absl_logging.warning('Variant folder %s has no %s', existing, 'dataset_info.json')
    absl_logging.warning('Given directory is a different thing=%s', tmp_path)
  finally:
    logger.removeHandler(records)
  assert not any('read only' in m for m in records.messages), records.messages
  variant = [m for m in records.messages if m.startswith('Variant folder')]
  assert variant == [f'Variant folder {existing} has no dataset_info.json']
  assert f'Given directory is a different thing={tmp_path}' in records.messages


@pytest.mark.slow  # 10-25 s (runs, subprocesses): in CI, not in the fast tier
def test_resuming_prints_no_read_only_notice(tmp_path):
  # The run to resume is trained in process: test_train_loop's digits_config() (the quickstart
  # with 4 steps at batch 64, no evaluation), whose train step the session has compiled already.
  from tests.test_train_loop import digits_config  # pylint: disable=g-import-not-at-top
  main.run(digits_config(), str(tmp_path / 'run'))
  # Without its summary, as a run killed before writing it: resumed (a run with its finished
  # summary is not resumed, it says it is finished).
  (tmp_path / 'run' / 'summary.json').unlink()
  args = ['--config', QUICKSTART, '--workdir', tmp_path / 'run', '--config.train.num_steps=4',
          '--config.train.batch_size=64', '--config.train.eval_after=False']
  again = _cli(*args)
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'resumed from step 4' in again.stdout
  assert 'read only' not in again.stderr, again.stderr
