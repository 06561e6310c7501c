"""launch/multiprocess_cpu.sh: two processes over jax.distributed train one run, as on a pod.

Each process has one CPU device and reads its own half of every global batch; the run must match
a single process over two devices step for step, and only process 0 writes logs and summary.json.
"""

import json
import os
import pathlib
import socket
import sys

import numpy as np

from tests.conftest import run_child
from tests.test_train_loop import ROOT, _env, _folder_overrides

STEPS = 4


def _overrides(root):
  return _folder_overrides(root, **{
      'train.num_steps': STEPS, 'train.log_every': 1, 'checkpoint.every_steps': 2,
      'eval.linear.epochs': 5, 'eval.compare_random_init': False})


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _losses(workdir):
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  # Training records only (the end-of-run evaluation adds an 'evaluation' record).
  return {row['step']: row['loss'] for row in map(json.loads, lines) if 'evaluation' not in row}


def test_two_processes_train_like_one_process_over_two_devices(image_root, tmp_path):
  config = 'configs/simclr.py:adc'
  multi = tmp_path / 'multi'
  env = {k: v for k, v in _env().items() if k != 'XLA_FLAGS'}  # one CPU device per process
  # In a session of its own: a launcher still running near the hang timeout is killed with the
  # training processes it started.
  launched = run_child(
      ['bash', 'launch/multiprocess_cpu.sh', '2', config, str(multi), *_overrides(image_root)],
      cwd=ROOT, env={**env, 'GLF_JAX_PORT': str(_free_port())})
  logs = {i: pathlib.Path(f'{multi}.process{i}.log').read_text() for i in (0, 1)}
  assert launched.returncode == 0, logs[0][-3000:] + logs[1][-3000:]

  single = tmp_path / 'single'
  one = run_child(
      [sys.executable, '-m', 'glf_jax.main', '--config', config, '--workdir', str(single),
       *_overrides(image_root), '--config.train.eval_after=False'],  # its losses only
      cwd=ROOT, env={**env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]

  multi_losses, single_losses = _losses(multi), _losses(single)
  assert sorted(multi_losses) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([multi_losses[s] for s in sorted(multi_losses)],
                             [single_losses[s] for s in sorted(multi_losses)], rtol=2e-4)
  # One writer: process 1 adds no lines of its own to the metrics (STEPS steps + 1 evaluation).
  assert len((multi / 'metrics.jsonl').read_text().splitlines()) == STEPS + 1
  summary = json.loads((multi / 'summary.json').read_text())
  assert (summary['status'], summary['step']) == ('finished', STEPS)
  assert 0.0 <= summary['pretrained']['linear/top1'] <= 1.0


def test_the_gpu_box_launcher_starts_one_process_per_gpu_on_it(tmp_path):
  """launch/gpu_box.sh on a machine whose nvidia-smi lists two GPUs: two processes, process i
  with GPU i alone, both pointed at one coordinator on localhost (python and nvidia-smi are
  stand-ins that record what they were given)."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'nvidia-smi').write_text('#!/bin/sh\necho "GPU 0: H100"\necho "GPU 1: H100"\n')
  (bin_dir / 'python').write_text(
      '#!/bin/sh\necho "$CUDA_VISIBLE_DEVICES $JAX_PLATFORMS $*"\n')
  for tool in bin_dir.iterdir():
    tool.chmod(0o755)
  workdir = tmp_path / 'run'
  launched = run_child(['bash', 'launch/gpu_box.sh', 'configs/simclr.py', str(workdir),
                        '--config.train.batch_size=1024'], cwd=ROOT,
                       env={**os.environ, 'PATH': f'{bin_dir}:{os.environ["PATH"]}',
                            'GLF_JAX_PORT': '23456'})
  assert launched.returncode == 0, launched.stderr
  for i in (0, 1):
    line = pathlib.Path(f'{workdir}.process{i}.log').read_text().strip()
    assert line == (f'{i} cuda -m glf_jax.main --config configs/simclr.py --workdir {workdir} '
                    '--config.distributed.coordinator_address=127.0.0.1:23456 '
                    f'--config.distributed.num_processes=2 --config.distributed.process_id={i} '
                    '--config.train.batch_size=1024')
  assert not pathlib.Path(f'{workdir}.process2.log').exists()
