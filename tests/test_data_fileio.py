"""Tests of glf_jax.fileio.atomic_write (used by the data caches and the feature cache)."""

import json
import os

import numpy as np
import pytest

from glf_jax.runtime import fileio


def test_atomic_write_creates_and_replaces(tmp_path):
  path = tmp_path / 'sub' / 'rows.npy'  # the directory is created
  with fileio.atomic_write(path) as f:
    np.save(f, np.arange(3))
  np.testing.assert_array_equal(np.load(path), np.arange(3))
  with fileio.atomic_write(os.fspath(path)) as f:
    np.save(f, np.arange(5))
  np.testing.assert_array_equal(np.load(path), np.arange(5))
  assert os.listdir(tmp_path / 'sub') == ['rows.npy']  # no temporary file left behind

  text = tmp_path / 'summary.json'
  with fileio.atomic_write(text, 'w', encoding='utf-8') as f:
    json.dump({'step': 1}, f)
  assert json.loads(text.read_text(encoding='utf-8')) == {'step': 1}


@pytest.mark.parametrize('error', [ValueError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
  path = tmp_path / 'features.npz'
  path.write_bytes(b'old')
  with pytest.raises(error):
    with fileio.atomic_write(path) as f:
      f.write(b'half a ')
      raise error('interrupted')
  assert path.read_bytes() == b'old'
  assert os.listdir(tmp_path) == ['features.npz']


def test_permissions_follow_the_umask(tmp_path):
  umask = os.umask(0o022)
  os.umask(umask)
  path = tmp_path / 'x.bin'
  with fileio.atomic_write(path) as f:
    f.write(b'x')
  plain = tmp_path / 'plain.bin'
  plain.write_bytes(b'x')
  assert os.stat(path).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_bad_mode_is_refused(tmp_path):
  with pytest.raises(ValueError, match='mode'):
    with fileio.atomic_write(tmp_path / 'x', 'a'):
      pass
