"""Smoke test of the loss benchmark script: it runs and writes well-formed results."""

import json
import math
import pathlib
import subprocess
import sys

_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / 'benchmarks' / 'losses.py'


def test_losses_benchmark_quick(tmp_path):
  out = tmp_path / 'x.json'
  # Run from tmp_path, not the repo root: the script must find glf_jax on its own.
  proc = subprocess.run(
      [sys.executable, str(_SCRIPT), '--quick', '--json', str(out), '--losses', 'nt_xent,adc'],
      cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
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
