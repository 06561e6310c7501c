"""Workdirs on an object store: every file of a run through glf_jax.runtime.fileio, the lease lock.

Two object stores that run here, in this process, stand in for the cloud:
* ``gcp-storage-emulator`` serves the GCS JSON API: gcsfs (fsspec, hence etils.epath) and
  TensorStore (orbax's array writer) both talk to it, so a whole run, its checkpoints, resume and
  a study work on ``gs://``. It does not enforce upload preconditions, so the lock's exclusivity
  is not tested on it.
* moto's S3 server enforces ``If-None-Match: *``: the lease lock is tested on ``s3://``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import pytest


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


_GCS_PORT = _free_port()
_S3_PORT = _free_port()
# Read when gcsfs / TensorStore / botocore make a client: set for this module's tests (and the
# children they start), before any of them is used, and restored after.
_ENV = {
    'STORAGE_EMULATOR_HOST': f'http://127.0.0.1:{_GCS_PORT}',
    'TENSORSTORE_GCS_HTTP_URL': f'http://127.0.0.1:{_GCS_PORT}',
    # gcsfs's zonal-bucket probe speaks gRPC, which the emulator does not: the plain client.
    'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
    'AWS_ENDPOINT_URL_S3': f'http://127.0.0.1:{_S3_PORT}',
    'AWS_ACCESS_KEY_ID': 'test', 'AWS_SECRET_ACCESS_KEY': 'test',
    'AWS_DEFAULT_REGION': 'us-east-1',
}

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import fsspec  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from glf_jax import main  # pylint: disable=g-import-not-at-top,wrong-import-position
from glf_jax.prior import features_file as prior_features  # pylint: disable=g-import-not-at-top,wrong-import-position
from glf_jax.run import lock  # pylint: disable=g-import-not-at-top,wrong-import-position
from glf_jax.run import metrics_log  # pylint: disable=g-import-not-at-top,wrong-import-position
from glf_jax.runtime import fileio  # pylint: disable=g-import-not-at-top,wrong-import-position



@pytest.fixture(scope='module', autouse=True)
def object_store_env():
  with pytest.MonkeyPatch.context() as patch:
    for key, value in _ENV.items():
      patch.setenv(key, value)
    yield
  fsspec.AbstractFileSystem.clear_instance_cache()  # no client keeps the emulators' addresses


@pytest.fixture(scope='module')
def gcs():
  """A GCS emulator with the bucket ``glf``; yields the bucket's URL."""
  from gcp_storage_emulator.handlers import objects  # pylint: disable=g-import-not-at-top
  download = objects.download

  def download_with_generation(request, response, storage, *args, **kwargs):
    # GCS sends an object's generation with its bytes (x-goog-generation), and TensorStore reads
    # it to re-read OCDBT's manifest; the emulator leaves it out, so it is added here.
    download(request, response, storage, *args, **kwargs)
    try:
      obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
      response['x-goog-generation'] = str(obj['generation'])
      response['x-goog-metageneration'] = str(obj['metageneration'])
    except Exception:  # pylint: disable=broad-except  # absent: the 404 stands
      pass

  objects.download = download_with_generation  # before the server's routes are built
  from gcp_storage_emulator.server import create_server  # pylint: disable=g-import-not-at-top
  server = create_server('127.0.0.1', _GCS_PORT, in_memory=True, default_bucket='glf')
  server.start()
  try:
    yield 'gs://glf'
  finally:
    server.stop()


@pytest.fixture(scope='module')
def s3():
  """moto's S3 server with the bucket ``glf``; yields the bucket's URL."""
  from moto.server import ThreadedMotoServer  # pylint: disable=g-import-not-at-top
  server = ThreadedMotoServer(ip_address='127.0.0.1', port=_S3_PORT, verbose=False)
  server.start()
  try:
    fs, _ = fsspec.core.url_to_fs('s3://glf')
    fs.mkdir('glf')
    yield 's3://glf'
  finally:
    server.stop()


@pytest.fixture
def url(gcs, request):
  """A fresh folder in the GCS bucket, named after the test."""
  return f'{gcs}/{request.node.name}-{time.monotonic_ns()}'


# --- the path layer -------------------------------------------------------------------------

def test_a_url_stays_a_url_and_a_local_path_becomes_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert fileio.resolve('gs://bucket/runs/r/') == 'gs://bucket/runs/r'
  assert fileio.resolve('runs/r') == str(tmp_path / 'runs' / 'r')
  assert fileio.join('gs://bucket/runs', 'r', 'summary.json') == 'gs://bucket/runs/r/summary.json'


def test_a_workdir_url_no_backend_serves_is_one_line_error(gcs):
  with pytest.raises(ValueError, match=r'^--workdir ftp://host/run: URL scheme ftp:// is not '
                     'supported') as error:
    main.check_workdir('ftp://host/run')
  assert '\n' not in str(error.value)
  with pytest.raises(ValueError, match='s3:// is not supported .orbax cannot write checkpoints'):
    main.check_workdir('s3://bucket/run')
  main.check_workdir('gs://bucket/run')  # gcsfs is installed: accepted
  main.check_workdir('/tmp/run')


def test_files_on_gcs_read_write_list_append_and_keep_aside(url):
  path = fileio.join(url, 'a', 'log.jsonl')
  assert not fileio.exists(path)
  fileio.append_text(path, 'one\n')
  fileio.append_text(path, 'two\n')  # an object cannot be appended to: rewritten whole
  assert fileio.read_text(path) == 'one\ntwo\n'
  assert fileio.isfile(path) and fileio.isdir(fileio.join(url, 'a'))
  assert fileio.listdir(fileio.join(url, 'a')) == ['log.jsonl']
  with fileio.atomic_write(fileio.join(url, 'a', 'x.bin'), 'wb') as f:
    f.write(b'\x00\x01')
  with fileio.open_file(fileio.join(url, 'a', 'x.bin'), 'rb') as f:
    assert f.read() == b'\x00\x01'
  aside = fileio.keep_aside(path, 'corrupt')
  assert aside.startswith(path + '.corrupt-') and not fileio.exists(path)
  assert fileio.read_text(aside) == 'one\ntwo\n'


def test_a_failed_atomic_write_to_gcs_uploads_nothing(url):
  path = fileio.join(url, 'summary.json')
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    f.write('{"old": 1}')
  with pytest.raises(RuntimeError, match='disk full'):
    with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
      f.write('{"new": ')
      raise RuntimeError('disk full')
  assert json.loads(fileio.read_text(path)) == {'old': 1}


@pytest.mark.parametrize('suffix', ['.safetensors', '.npy'])
def test_prior_features_files_on_gcs_are_written_and_read_back(url, suffix):
  from tests.test_prior_features import _Source, _table  # pylint: disable=g-import-not-at-top
  source, table = _Source(), _table()
  path = fileio.join(url, f'prior{suffix}')
  prior_features.write(path, table, source=source, description='toy')
  features, metadata = prior_features.read(path)
  np.testing.assert_array_equal(features, table)
  assert metadata['source'] == 'toy/train' and metadata['description'] == 'toy'
  np.testing.assert_array_equal(prior_features.load_for_source(path, source), table)
  with pytest.raises(FileNotFoundError, match='no prior features file'):
    prior_features.read(fileio.join(url, f'missing{suffix}'))


@pytest.mark.parametrize('suffix', ['.safetensors', '.npz'])
def test_encoder_weights_and_state_dicts_on_gcs_are_written_and_read_back(url, suffix):
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from glf_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from glf_jax.models import build_encoder, weights  # pylint: disable=g-import-not-at-top
  from glf_jax.models import torchvision as tv  # pylint: disable=g-import-not-at-top
  model = config_lib.base_config('simclr', 'digits', 'resnet_tiny').model
  saved, loaded = (build_encoder(model, rngs=nnx.Rngs(seed)) for seed in (0, 1))
  which = nnx.Any(nnx.Param, nnx.BatchStat)
  path = fileio.join(url, f'encoder{suffix}')
  weights.export_weights(nnx.state(saved, which), path)
  weights.load_weights_into(loaded, path)
  for a, b in zip(jax.tree.leaves(nnx.state(saved, which)),
                  jax.tree.leaves(nnx.state(loaded, which))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(FileNotFoundError, match='no weights file'):
    weights.load_weights_into(loaded, fileio.join(url, f'missing{suffix}'))
  state_dict = {'conv1.weight': np.arange(6, dtype=np.float32).reshape(1, 2, 3)}
  tv.save_state_dict(state_dict, fileio.join(url, 'tv.safetensors'))
  read = tv.load_state_dict(fileio.join(url, 'tv.safetensors'))
  np.testing.assert_array_equal(read['conv1.weight'], state_dict['conv1.weight'])


def test_the_metrics_log_on_gcs_is_uploaded_in_batches_and_at_close(url, monkeypatch):
  # No TensorBoard writer here: tensorboardX's gs:// writer uploads again when it is garbage
  # collected, which after this module's emulator has stopped would retry for minutes.
  monkeypatch.setattr(metrics_log, 'tensorboard', lambda *args, **kwargs: None)
  writers = metrics_log.Writers(url, enabled=True)
  path = fileio.join(url, 'metrics.jsonl')
  writers.write(1, {'loss': 2.0})
  writers.write(2, {'loss': 1.5})
  assert not fileio.exists(path)  # within UPLOAD_SECONDS of the start: not uploaded yet
  writers.flush()  # what a checkpoint does
  assert [r['step'] for r in metrics_log.read(path)] == [1, 2]
  monkeypatch.setattr(metrics_log, 'UPLOAD_SECONDS', 0.0)
  writers.write(3, {'loss': 1.0})  # due: uploaded at once
  assert [r['step'] for r in metrics_log.read(path)] == [1, 2, 3]
  writers.close()
  resumed = metrics_log.Writers(url, enabled=True, start_step=2)  # a run resumed from step 2
  resumed.write(3, {'loss': 0.9})
  resumed.close()
  assert [(r['step'], r['loss']) for r in metrics_log.read(path)] == [(1, 2.0), (2, 1.5),
                                                                       (3, 0.9)]


# --- a run on gs:// --------------------------------------------------------------------------
# In child processes, as a user runs them (one CPU device each).

_RESUME_CHILD = """
import json, signal, sys
import jax, numpy as np
sys.path.insert(0, '.')
from configs import quickstart
from glf_jax.run import session as session_lib
from glf_jax.train.pretrain import pretrain
local_dir, url = sys.argv[1], sys.argv[2]
config = quickstart.get_config()
config.train.update(num_steps=4, batch_size=64, eval_after=False)
config.checkpoint.every_steps = 2
local = pretrain(config, local_dir)
real_train = session_lib.Session.train
def sigterm_after_the_second_step(self, state, step_fn, **kwargs):
  def on_step(step):
    if step == 2:
      signal.raise_signal(signal.SIGTERM)
  return real_train(self, state, step_fn, **kwargs, on_step=on_step)
session_lib.Session.train = sigterm_after_the_second_step
first = pretrain(config, url)
session_lib.Session.train = real_train
resumed = pretrain(config, url)
same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)),
                                    jax.device_get(local.state['params']),
                                    jax.device_get(resumed.state['params'])))
print(json.dumps({'first': int(first.state['step']), 'interrupted': first.interrupted,
                  'resumed': int(resumed.state['step']), 'same': all(same)}))
"""


def _child(args, tmp_path):
  from tests.conftest import run_child  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = run_child([sys.executable, *args], cwd=root, env=dict(os.environ))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow  # a child process that trains (20-30 s): not in the fast tier
def test_a_run_on_gcs_interrupted_and_resumed_equals_an_uninterrupted_local_run(url, tmp_path):
  out = _child(['-c', _RESUME_CHILD, str(tmp_path / 'local'), url], tmp_path)
  facts = json.loads(out.strip().splitlines()[-1])
  assert facts == {'first': 2, 'interrupted': True, 'resumed': 4, 'same': True}, facts
  assert not fileio.exists(fileio.join(url, '.lock'))  # the lease is released
  names = set(fileio.listdir(url))
  assert {'config.json', 'checkpoints', 'metrics.jsonl', 'tensorboard'} <= names, names
  assert [r['step'] for r in metrics_log.read(fileio.join(url, 'metrics.jsonl'))] == [1, 2, 3, 4]
  assert sorted(fileio.listdir(fileio.join(url, 'checkpoints'))) == ['2', '4']


@pytest.mark.slow  # a child process that trains (20-30 s): not in the fast tier
def test_main_on_a_gcs_workdir_writes_its_summary_and_a_second_call_does_nothing(
    url, tmp_path):
  command = ['-m', 'glf_jax.main', '--config', 'configs/quickstart.py', '--workdir', url,
             '--config.train.num_steps=2', '--config.eval.linear.epochs=2',
             '--config.eval.embedding_examples=0']
  out = _child(command, tmp_path)
  assert f'summary written to {url}/summary.json' in out, out[-2000:]
  stored = json.loads(fileio.read_text(fileio.join(url, 'summary.json')))
  assert stored['status'] == 'finished' and stored['step'] == 2
  assert 0.0 <= stored['pretrained']['linear/top1'] <= 1.0
  assert fileio.exists(fileio.join(url, 'curves.png'))
  again = _child(command, tmp_path)
  assert 'holds a finished run (step 2, evaluated): nothing to do' in again, again[-2000:]


@pytest.mark.slow  # a child process that trains (20-30 s): not in the fast tier
def test_a_study_on_gcs_runs_its_cells_there_and_aggregates(url, tmp_path):
  _child(['-m', 'glf_jax.main', '--config', 'configs/studies/adc_ablation.py:smoke',
          '--workdir', url], tmp_path)
  for name in ('results.csv', 'results.md', 'results.json', 'study_config.json', 'commands.txt'):
    assert fileio.exists(fileio.join(url, name)), name
  for cell in ('baseline', 'adc'):
    summary = json.loads(fileio.read_text(fileio.join(url, 'cells', cell, 'seed0',
                                                      'summary.json')))
    assert summary['status'] == 'finished'
  assert 'baseline' in fileio.read_text(fileio.join(url, 'results.csv'))


# --- the lease lock (on S3, which enforces exclusive create) ---------------------------------

def _lease_record(**fields):
  return json.dumps({'pid': 1, 'host': 'elsewhere', 'started': '2026-01-01 00:00:00',
                     'command': 'train', 'token': 'abc', 'renewed': time.time(), **fields})


def test_a_second_run_on_a_leased_s3_workdir_is_refused_naming_the_holder(s3):
  workdir = f'{s3}/busy-{time.monotonic_ns()}'
  with lock.hold(workdir):
    with pytest.raises(lock.WorkdirBusyError, match=rf'^{workdir} is in use by another run: pid '
                       rf'{os.getpid()} on {socket.gethostname()}') as error:
      with lock.hold(workdir):
        pass
    assert '\n' not in str(error.value)
  assert not fileio.exists(fileio.join(workdir, '.lock'))  # released
  with lock.hold(workdir):  # free again
    pass


def test_an_expired_lease_is_taken_over_once(s3, caplog):
  workdir = f'{s3}/expired-{time.monotonic_ns()}'
  fs, key = fsspec.core.url_to_fs(fileio.join(workdir, '.lock'))
  fs.pipe_file(key, _lease_record(renewed=time.time() - 10 * lock.LEASE_SECONDS).encode())
  with lock.hold(workdir):
    holder = json.loads(fs.cat_file(key))
    assert holder['pid'] == os.getpid() and holder['token'] != 'abc'
  assert 'ended without releasing its lease' in caplog.text
  assert not fs.exists(key + '.takeover-abc')  # the marker is removed after the takeover

  # Two runs taking over the same dead lease: the one that finds the other's marker is refused.
  fs.pipe_file(key, _lease_record(renewed=time.time() - 10 * lock.LEASE_SECONDS).encode())
  fs.pipe_file(key + '.takeover-abc', b'{}')
  with pytest.raises(lock.WorkdirBusyError, match='another run is taking over the expired lease'):
    with lock.hold(workdir):
      pass


def test_a_live_lease_of_another_host_is_respected(s3):
  workdir = f'{s3}/live-{time.monotonic_ns()}'
  fs, key = fsspec.core.url_to_fs(fileio.join(workdir, '.lock'))
  fs.pipe_file(key, _lease_record().encode())
  with pytest.raises(lock.WorkdirBusyError, match=r'pid 1 on elsewhere .*lease renewed \d+ s ago'):
    with lock.hold(workdir):
      pass
  assert json.loads(fs.cat_file(key))['token'] == 'abc'  # untouched


def test_the_holder_renews_its_lease(s3, monkeypatch):
  monkeypatch.setattr(lock, 'LEASE_SECONDS', 0.4)  # renewed every 0.1 s
  workdir = f'{s3}/renew-{time.monotonic_ns()}'
  fs, key = fsspec.core.url_to_fs(fileio.join(workdir, '.lock'))
  with lock.hold(workdir):
    first = json.loads(fs.cat_file(key))['renewed']
    # Waits for the renewal thread, however busy the machine (bounded by the hang timeout only).
    while json.loads(fs.cat_file(key))['renewed'] == first:
      time.sleep(0.05)
    assert json.loads(fs.cat_file(key))['renewed'] > first
    lock.check_held(workdir)  # still ours


def test_a_holder_whose_lease_was_taken_over_stops_at_its_next_check(s3):
  workdir = f'{s3}/taken-{time.monotonic_ns()}'
  fs, key = fsspec.core.url_to_fs(fileio.join(workdir, '.lock'))
  with lock.hold(workdir):
    fs.pipe_file(key, _lease_record().encode())  # another run took it (we were stalled)
    lock._held_leases[workdir].renew()  # what the renewal thread does next  # pylint: disable=protected-access
    with pytest.raises(lock.LeaseLostError, match='lost its lease to pid 1 on elsewhere'):
      lock.check_held(workdir)
  assert json.loads(fs.cat_file(key))['token'] == 'abc'  # the new holder's lease is kept


def test_a_lock_object_that_is_not_a_lease_is_left_alone(s3):
  workdir = f'{s3}/other-{time.monotonic_ns()}'
  fs, key = fsspec.core.url_to_fs(fileio.join(workdir, '.lock'))
  fs.pipe_file(key, b'my notes')
  with pytest.raises(lock.LockFileError, match='holds something other than a lock record'):
    with lock.hold(workdir):
      pass
  assert fs.cat_file(key) == b'my notes'


if __name__ == '__main__':
  sys.exit(pytest.main([__file__, '-q']))
