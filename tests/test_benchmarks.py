"""Smoke tests of the benchmark scripts: each runs and writes its table and well-formed JSON.

How fast is never checked (the scripts measure; a test on a busy machine must not fail)."""

import json
import math
import pathlib
import sys

import pytest

from tests.conftest import run_child

_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / 'benchmarks' / 'losses.py'


def test_losses_benchmark_quick(tmp_path):
  out = tmp_path / 'x.json'
  # Run from tmp_path, not the repo root: the script must find glf_jax on its own.
  proc = run_child(
      [sys.executable, str(_SCRIPT), '--quick', '--json', str(out), '--losses', 'nt_xent,adc'],
      cwd=tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert '| loss | form | M |' in proc.stdout
  result = json.loads(out.read_text())
  assert result['metadata']['jax_version']
  rows = result['rows']
  for loss in ('nt_xent', 'adc'):
    for form in ('dense', 'blockwise'):
      matching = [r for r in rows if r['loss'] == loss and r['form'] == form]
      assert matching, (loss, form)
      for r in matching:
        assert r['executed'], r
        assert math.isfinite(r['fwd_bwd_ms']) and r['fwd_bwd_ms'] > 0, r
        assert math.isfinite(r['compile_s']) and r['compile_s'] > 0, r
        assert math.isfinite(r['loss_value']), r
  assert {r['loss'] for r in rows} == {'nt_xent', 'adc'}


_TRAIN_SCRIPT = _SCRIPT.parent / 'train_throughput.py'


def test_train_throughput_benchmark_quick(tmp_path):
  out = tmp_path / 't.json'
  # The script's paths (plain, +adc, a features prior, a momentum target); every method's step
  # itself is compiled and run by tests/test_train_step.py.
  proc = run_child([sys.executable, str(_TRAIN_SCRIPT), '--quick', '--steps', '2',
                    '--methods', 'simclr,simclr+adc,simclr+adc:features,mocov3',
                    '--json', str(out)], cwd=tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert '| objective | arch | dtype | batch | px | ms/step |' in proc.stdout
  result = json.loads(out.read_text())
  assert {r['objective'] for r in result['rows']} == {
      'simclr', 'simclr+adc', 'simclr+adc:features', 'mocov3'}
  for r in result['rows']:
    assert r['steps_timed'] == 2 and math.isfinite(r['loss']) and r['ms_per_step'] > 0, r
    assert r['step_memory_gib'] > 0 and r['dtype'] == 'float32', r
  for key in ('simclr+adc/float32@16', 'simclr+adc:features/float32@16'):
    overhead = result['adc_overhead'][key]
    assert overhead['min'] <= overhead['median'] <= overhead['max'], overhead


_CONV_SCRIPT = _SCRIPT.parent / 'cpu_conv_layers.py'


def test_cpu_conv_layers_benchmark_quick(tmp_path):
  out = tmp_path / 'c.json'
  proc = run_child(
      [sys.executable, str(_CONV_SCRIPT), '--batch', '1', '--max-size', '8', '--repeats', '1',
       '--formulations', 'lax,shifted_dot,winograd', '--json', str(out)],
      cwd=tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert '| layer | × | formulation |' in proc.stdout
  result = json.loads(out.read_text())
  rows = result['rows']
  # Inputs of at most 8×8: 256->256 s1, 256->512 s2 and its 1×1 shortcut, 512->512 s1;
  # each in 3 formulations.
  assert {r['formulation'] for r in rows} == {'lax', 'shifted_dot', 'winograd'}
  assert len(rows) == 12
  for r in rows:
    for p in ('fwd', 'dx', 'dw'):
      assert r[f'{p}_ms'] > 0, r
    # The alternative formulations compute the same convolution and gradients as lax.
    assert r['max_rel_err_vs_first'] < 1e-5, r
  assert any(r['formulation'] == 'winograd' and r['applies'] for r in rows)
  assert any(r['formulation'] == 'winograd' and not r['applies'] for r in rows)
  totals = result['totals']
  assert set(totals) == {'lax', 'shifted_dot', 'winograd'}
  assert totals['lax']['gflop'] == totals['winograd']['gflop'] > 0


_COHORT_SCRIPT = _SCRIPT.parent / 'cohort_step.py'


def test_cohort_step_benchmark_quick(tmp_path):
  out = tmp_path / 'cohort.json'
  proc = run_child(
      [sys.executable, str(_COHORT_SCRIPT), '--quick', '--vmap', '--json', str(out)],
      cwd=tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert 'cohort split / two separate steps:' in proc.stdout
  assert 'cohort fused / two separate steps:' in proc.stdout
  assert 'vmapped / one after the other:' in proc.stdout  # (the script checks the losses agree)
  result = json.loads(out.read_text())
  assert set(result['ms']) == {'cohort split', 'cohort fused', 'cl', 'nscl'}
  assert all(v > 0 for v in result['ms'].values())
  assert set(result['ratio_median']) == {'cohort split', 'cohort fused'}
  # The shared views: each dispatch's XLA operations are fewer than the two separate steps' sum.
  for dispatch in ('cohort split', 'cohort fused'):
    assert result['gflop'][dispatch] < result['gflop']['cl'] + result['gflop']['nscl'], dispatch
  assert len(result['vmap']['ratios']) == 3 and result['vmap']['ratio_median'] > 0  # --quick


def _quick_run(script, tmp_path):
  """Runs ``benchmarks/<script> --quick`` from ``tmp_path``; returns (stdout, its JSON)."""
  out = tmp_path / 'results.json'
  proc = run_child([sys.executable, str(_SCRIPT.parent / script), '--quick', '--json', str(out)],
                   cwd=tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc.stdout, json.loads(out.read_text())


def test_host_loop_benchmark_quick(tmp_path):
  stdout, result = _quick_run('host_loop.py', tmp_path)
  header = '| code | stage | images/s | ms/step | main-thread CPU ms/step | of a 2 ms step |'
  assert header in stdout
  assert result['metadata']['batch_size'] == 512 and result['metadata']['quick']
  stages = [r['stage'] for r in result['rows']]
  assert stages[:3] == ['loader', 'loader + placement (to_global_batch)',
                        'dispatch alone (null step, one placed batch)'], stages
  assert stages[3:] == ['session loop (null step, 2 state arrays)',
                        'session loop (null step, 2 state arrays, 8 steps per call)'], stages
  assert [r.get('steps_per_call') for r in result['rows'][3:]] == [1, 8]
  for r in result['rows']:
    # (20 timed steps: whole calls of 8 make 24)
    assert r['steps'] == (24 if r.get('steps_per_call') == 8 else 20), r
    assert r['images_per_s'] > 0 and r['ms_per_step'] > 0, r


def test_tfds_decode_cache_benchmark_quick(tmp_path):
  stdout, result = _quick_run('tfds_decode_cache.py', tmp_path)
  assert '| stage | images | seconds | images/s | images per core-second |' in stdout
  assert result['metadata']['image_size'] == 224 and result['metadata']['images'] == 64
  stages = [r['stage'].split(' (')[0] for r in result['rows']]
  assert stages == ['decode every read', 'cache build', 'cached read_batch', 'cached loader']
  assert all(r['images'] > 0 and r['images_per_core_s'] > 0 for r in result['rows'])


@pytest.mark.slow  # two child processes compiling the :midi step (about 20 s each)
def test_step_numerics_of_the_midi_step_agree_across_xla_presets(tmp_path):
  """benchmarks/step_numerics.py: the :midi training step under both XLA CPU presets gives the
  same losses to float rounding (a miscompiled step parts by far more)."""
  files = []
  for preset in ('fast', 'none'):
    out = tmp_path / f'{preset}.json'
    proc = run_child([sys.executable, str(_SCRIPT.parent / 'step_numerics.py'), '--steps', '2',
                      '--preset', preset, '--json', str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files.append(out)
  fast, plain = (json.loads(f.read_text()) for f in files)
  assert fast['arch'] == 'resnet_small' and fast['batch_size'] == 256 and len(fast['losses']) == 2
  assert max(abs(a - b) for a, b in zip(fast['losses'], plain['losses'])) < 1e-4
  proc = run_child([sys.executable, str(_SCRIPT.parent / 'step_numerics.py'), '--compare',
                    *map(str, files)], cwd=tmp_path)
  assert proc.returncode == 0 and '| jax ' in proc.stdout, proc.stdout + proc.stderr
