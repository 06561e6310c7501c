"""The embedded default job, shrunk to a few steps, and the command line's config checks."""

import json
import pathlib
import subprocess
import sys

import pytest

from glf_jax import main

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _quickstart():
  sys.path.insert(0, str(ROOT))
  from configs import quickstart
  return quickstart.get_config()


def test_quickstart_runs_and_writes_a_summary(tmp_path):
  config = _quickstart()
  config.steps, config.log_every, config.batch_size = 6, 3, 64
  summary = main.run(config, str(tmp_path))
  saved = json.loads((tmp_path / 'summary.json').read_text())
  assert saved['objective'] == 'simclr+adc' and saved['steps'] == 6
  for result in (saved['random_init'], saved['pretrained']):
    assert 0.0 <= result['knn_top1'] <= 1.0
  assert [h['step'] for h in summary['history']] == [1, 3, 6]
  assert {'loss', 'simclr', 'adc', 'adc/dcm', 'adc/lpm'} <= set(summary['history'][0])


def test_unknown_mode_is_rejected():
  config = _quickstart()
  config.unlock()
  config.mode = 'fly'
  with pytest.raises(ValueError, match=r"config.mode must be one of \['loss_demo'\]"):
    main.run(config)


@pytest.mark.parametrize('override,message', [
    ('--config.nope=1', 'nope'),
    ('--config.objective.name=simclr+magic', 'constraint term'),
    ('--config.objective.adc.rho=2.0', 'rho must be > 2'),
])
def test_command_line_rejects_bad_config(override, message):
  result = subprocess.run(
      [sys.executable, '-m', 'glf_jax.main', '--config', 'configs/quickstart.py', override,
       '--config.steps=1'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert message in result.stderr
