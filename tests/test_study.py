"""Studies (glf_jax.study.runner, glf_jax.study.aggregate, configs/studies/): the smoke studies
end to end in process, shards, skipping finished cells, partial aggregation, the statistics on
synthetic summaries, and the figures."""

import csv
import json
import os
import pathlib
import shutil
import sys

import numpy as np
import scipy.stats
import pytest

from glf_jax import config as config_lib
from glf_jax import main
from glf_jax.run import lock
from glf_jax.study import aggregate as aggregate_lib
from glf_jax.study import runner as study_runner
from tests.conftest import run_child

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _study_config(name, arg='smoke', **study_settings):
  config = config_lib.load_config_file(str(ROOT / 'configs' / 'studies' / f'{name}.py:{arg}'))
  for key, value in study_settings.items():
    config.study[key] = value
  config.lock()
  return config


def _read_csv(path):
  with open(path, encoding='utf-8') as f:
    return list(csv.DictReader(f))


def _assert_png(path):
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_SIGNATURE, path
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  pixels = image.imread(path)
  assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
  assert float(np.ptp(pixels)) > 0  # not a blank canvas


def _summary_mtimes(workdir):
  return {p: p.stat().st_mtime_ns for p in pathlib.Path(workdir, 'cells').glob('*/*/summary.json')}


@pytest.mark.optimized  # runs far longer than it compiles
@pytest.mark.slow  # trains 2 cells (~30-60 s): in CI, not in the fast tier
def test_adc_ablation_smoke_shards_skip_and_partial_aggregation(tmp_path):
  workdir = tmp_path / 'study'
  cells = [c.name for c in study_runner.parse_cells(_study_config('adc_ablation').study)]
  assert len(cells) == 2
  # Shard 0/2, then 1/2: disjoint runs whose union is the study.
  first = main.run(_study_config('adc_ablation', shard='0/2'), str(workdir))
  assert first['status'] == 'finished' and first['skipped'] == []
  # After one shard the other cell is missing, and the tables are written all the same.
  assert first['missing'] == [[cells[1], 0]]
  markdown = (workdir / 'results.md').read_text(encoding='utf-8')
  assert f'`{cells[1]}`: seed 0 (missing)' in markdown
  second = main.run(_study_config('adc_ablation', shard='1/2'), str(workdir))
  ran = {tuple(r) for r in first['ran']} | {tuple(r) for r in second['ran']}
  assert not {tuple(r) for r in first['ran']} & {tuple(r) for r in second['ran']}
  assert ran == {(c, 0) for c in cells}
  assert second['missing'] == []
  for c in cells:
    summary = json.loads((workdir / 'cells' / c / 'seed0' / 'summary.json').read_text())
    assert summary['status'] == 'finished' and 'linear/top1' in summary['pretrained']
  baseline = json.loads((workdir / 'cells' / 'baseline' / 'seed0' / 'config.json').read_text())
  assert baseline['objective']['name'] == 'simclr' and 'study' not in baseline
  assert baseline['mode'] == 'pretrain' and baseline['seed'] == 0

  # A re-run of the whole study trains nothing: every summary.json stays as it was.
  before = _summary_mtimes(workdir)
  again = main.run(_study_config('adc_ablation'), str(workdir))
  assert again['ran'] == [] and sorted(map(tuple, again['skipped'])) == sorted(ran)
  assert _summary_mtimes(workdir) == before and len(before) == 2

  rows = _read_csv(workdir / 'results.csv')
  assert [(r['cell'], r['seed'], r['status']) for r in rows] == [(c, '0', 'finished')
                                                                  for c in cells]
  assert rows[0]['objective.name'] == 'simclr' and rows[1]['objective.name'] == ''
  for r in rows:
    assert 0.0 <= float(r['linear/top1']) <= 1.0 and float(r['train_seconds']) > 0
  _assert_png(workdir / 'ablation_linear_top1.png')

  # Partial study: a deleted cell is listed as missing; results.md/csv are still written.
  shutil.rmtree(workdir / 'cells' / 'adc')
  os.remove(workdir / 'results.md')
  partial = main.run(_study_config('adc_ablation', aggregate_only=True), str(workdir))
  assert partial['ran'] == [] and partial['missing'] == [['adc', 0]]
  assert not (workdir / 'cells' / 'adc').exists()  # aggregate_only trains nothing
  markdown = (workdir / 'results.md').read_text(encoding='utf-8')
  assert '`adc`: seed 0 (missing)' in markdown and '1 of 2 runs finished' in markdown
  rows = _read_csv(workdir / 'results.csv')
  assert [(r['cell'], r['status'], r['linear/top1']) for r in rows][1] == ('adc', 'missing', '')


@pytest.mark.slow
def test_balanced_grid_smoke_end_to_end(tmp_path):
  config = _study_config('balanced_grid')
  summary = main.run(config, str(tmp_path))
  assert summary['status'] == 'finished' and summary['missing'] == []
  assert [tuple(r) for r in summary['ran']] == [('ntxent_t0.5', 0), ('a4_l2', 0)]
  baseline = json.loads((tmp_path / 'cells' / 'ntxent_t0.5' / 'seed0' / 'config.json').read_text())
  assert baseline['objective']['name'] == 'simclr'
  assert baseline['objective']['simclr']['temperature'] == 0.5
  rows = _read_csv(tmp_path / 'results.csv')
  assert [r['cell'] for r in rows] == ['ntxent_t0.5', 'a4_l2']
  assert all(r['status'] == 'finished' and r['knn/k20'] for r in rows)
  _assert_png(tmp_path / 'cells_linear_top1.png')


def _synthetic_study(tmp_path, summaries):
  """The balanced smoke study with a 2x2 (alpha, lam) grid, and fake finished summaries:
  ``summaries[(cell, seed)] = linear/top1`` (None: no summary)."""
  config = _study_config('balanced_grid')
  cells = [study_runner.cell(f'a{a}_l{l}', {'objective.balanced.alpha': float(a),
                                            'objective.balanced.lam': float(l)},
                             paper={'linear/top1': 0.9} if (a, l) == (1, 1) else None)
           for a in (1, 2) for l in (1, 2)]
  with config.unlocked():
    config.study.cells = tuple(cells)
    config.study.seeds = (0, 1, 2)
    config.study.metrics = ('linear/top1', 'knn/k20')
    config.study.compare_to = None
    config.study.comparisons = ()  # the smoke study's claims name cells replaced here
    config.study.figures = (
        study_runner.figure('heatmap', 'linear/top1', x='objective.balanced.alpha',
                            y='objective.balanced.lam', file='grid.png'),
        study_runner.figure('line', 'linear/top1', x='objective.balanced.alpha',
                            series='objective.balanced.lam', log_x=True, file='line.png'),
        study_runner.figure('bar', 'linear/top1', file='bar.png'))
  for (name, seed), top1 in summaries.items():
    directory = pathlib.Path(study_runner.cell_dir(str(tmp_path), name, seed))
    directory.mkdir(parents=True)
    (directory / 'summary.json').write_text(json.dumps({
        'mode': 'pretrain', 'status': 'finished', 'train_seconds': 10.0 + seed,
        'pretrained': {'linear/top1': top1, 'knn/k20': top1 - 0.1}}))
  return config


def test_aggregate_mean_std_on_synthetic_summaries(tmp_path):
  values = {('a1_l1', 0): 0.7, ('a1_l1', 1): 0.8, ('a1_l1', 2): 0.9,   # mean 0.8, std 0.1
            ('a1_l2', 0): 0.5, ('a1_l2', 2): 0.6,                     # n = 2, seed 1 missing
            ('a2_l1', 1): 0.4}                                        # n = 1: no std
  config = _synthetic_study(tmp_path, values)
  # An interrupted cell counts as missing, with its status.
  interrupted = pathlib.Path(study_runner.cell_dir(str(tmp_path), 'a2_l2', 0))
  interrupted.mkdir(parents=True)
  (interrupted / 'summary.json').write_text(json.dumps({'status': 'interrupted', 'step': 3}))
  result = aggregate_lib.aggregate(config, str(tmp_path), command='python -m glf_jax.main X')
  stats = result['results']
  assert stats['a1_l1']['linear/top1']['mean'] == pytest.approx(0.8)
  assert stats['a1_l1']['linear/top1']['std'] == pytest.approx(0.1)  # ddof = 1 (ddof 0: 0.0816)
  assert stats['a1_l1']['knn/k20']['mean'] == pytest.approx(0.7)
  assert stats['a1_l2']['linear/top1']['n'] == 2
  assert stats['a1_l2']['linear/top1']['std'] == pytest.approx(np.std([0.5, 0.6], ddof=1))
  assert stats['a2_l1']['linear/top1']['std'] is None
  assert stats['a2_l2']['linear/top1']['n'] == 0
  expected_missing = {('a1_l2', 1), ('a2_l1', 0), ('a2_l1', 2), ('a2_l2', 0), ('a2_l2', 1),
                      ('a2_l2', 2)}
  assert {tuple(m) for m in result['missing']} == expected_missing

  markdown = (tmp_path / 'results.md').read_text(encoding='utf-8')
  assert 'python -m glf_jax.main X' in markdown and 'Seeds: 0, 1, 2' in markdown
  assert ('| `a1_l1` | objective.balanced.alpha=1, objective.balanced.lam=1 | 0.8000 ± 0.1000 | '
          '0.9000 | 0.7000 ± 0.1000 | 3 |') in markdown
  assert '0.4000 ± —' in markdown
  assert '`a2_l2`: seed 0 (interrupted), seed 1 (missing), seed 2 (missing)' in markdown
  assert '`a1_l2`: seed 1 (missing)' in markdown

  rows = _read_csv(tmp_path / 'results.csv')
  assert len(rows) == 12  # every planned (cell, seed)
  row = next(r for r in rows if (r['cell'], r['seed']) == ('a1_l1', '2'))
  assert (float(row['linear/top1']), float(row['train_seconds']), row['status']) == (0.9, 12.0,
                                                                                       'finished')
  assert float(row['objective.balanced.alpha']) == 1.0
  # The budget beside the accuracy: the mean training time of each cell's finished runs.
  seconds = json.loads((tmp_path / 'results.json').read_text(encoding='utf-8'))['train_seconds']
  assert seconds['a1_l1'] == pytest.approx(11.0) and 'a2_l2' not in seconds
  for name in ('grid.png', 'line.png', 'bar.png'):
    _assert_png(tmp_path / name)


def test_aggregate_draws_nothing_without_finished_cells(tmp_path):
  config = _synthetic_study(tmp_path, {})
  result = aggregate_lib.aggregate(config, str(tmp_path), command='x')
  assert len(result['missing']) == 12
  assert not list(tmp_path.glob('*.png'))
  assert (tmp_path / 'results.md').exists() and len(_read_csv(tmp_path / 'results.csv')) == 12


def test_interrupted_cell_stops_the_study(tmp_path, monkeypatch):
  from glf_jax import modes as runner  # pylint: disable=g-import-not-at-top
  calls = []

  def fake_run(config, workdir):
    calls.append((config.mode, workdir))
    return {'status': 'interrupted', 'stop_signal': 'SIGTERM'}

  monkeypatch.setattr(runner, 'run', fake_run)
  summary = study_runner.run_study(_study_config('adc_ablation'), str(tmp_path))
  assert summary['status'] == 'interrupted' and summary['stop_signal'] == 'SIGTERM'
  assert len(calls) == 1 and calls[0][0] == 'pretrain'
  assert calls[0][1].endswith(os.path.join('cells', 'baseline', 'seed0'))
  assert not (tmp_path / 'results.md').exists()


def test_plan_shards_are_disjoint_and_cover_the_study():
  study = _study_config('adc_ablation', 'mini').study
  runs = [(c.name, s) for c, s in study_runner.plan(study)]
  assert len(runs) == len(set(runs)) == 24
  assert [s for _, s in runs[:8]] == [0] * 8  # seed by seed
  shards = [[(c.name, s) for c, s in study_runner.shard_of(study_runner.plan(study), f'{i}/3')]
            for i in range(3)]
  assert sorted(sum(shards, [])) == sorted(runs)
  assert all(not set(a) & set(b) for i, a in enumerate(shards) for b in shards[i + 1:])


@pytest.mark.parametrize('shard', ['2/2', '1', '-1/2', 'a/b'])
def test_bad_shard_is_refused(shard):
  with pytest.raises(ValueError, match='study.shard'):
    study_runner.parse_shard(shard)


def test_bad_cells_are_refused_naming_the_key(tmp_path):
  config = _study_config('adc_ablation', compare_to=None)
  with config.unlocked():
    config.study.cells = (study_runner.cell('a', {'objective.adc.nope': 1.0}),)
  with pytest.raises(ValueError, match='nope'):  # unknown objective term key, before training
    study_runner.run_study(config, str(tmp_path))
  with config.unlocked():
    config.study.cells = (study_runner.cell('a', {'train.nope': 1}),)
  with pytest.raises(ValueError, match="override 'train.nope'"):
    study_runner.run_study(config, str(tmp_path))
  with config.unlocked():
    config.study.cells = (study_runner.cell('a'), study_runner.cell('a'))
  with pytest.raises(ValueError, match=r'study.cells\[1\].name'):
    study_runner.run_study(config, str(tmp_path))
  with config.unlocked():
    config.study.cells = (study_runner.cell('a'),)
    config.study.only_cells = 'b'
  with pytest.raises(ValueError, match='study.only_cells'):
    study_runner.run_study(config, str(tmp_path))
  assert not (tmp_path / 'cells').exists()


def test_study_config_round_trips_through_json():
  config = _study_config('balanced_grid', 'paper')
  loaded = json.loads(config.to_json_best_effort())
  assert loaded['study']['cells'] == list(config.study.cells)  # JSON strings, unchanged
  cells = study_runner.parse_cells(config.study)
  assert len(cells) == 19 and cells[0].overrides['objective.simclr.temperature'] == 0.5


@pytest.mark.slow  # subprocesses or a trained run (5-10 s each): in CI, not in the fast tier
def test_study_config_takes_command_line_overrides(tmp_path):
  result = run_child(
      [sys.executable, '-m', 'glf_jax.main', '--config', 'configs/studies/adc_ablation.py:smoke',
       '--config.mode=show_config', '--config.study.shard=1/2', '--config.study.seeds=(3,4)',
       '--config.study.only_cells=adc', '--config.objective.adc.nu=2.5', f'--workdir={tmp_path}'],
      cwd=ROOT, env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(ROOT)})
  assert result.returncode == 0, result.stderr
  for line in ("study.shard: '1/2'", 'study.seeds: (3, 4)', "study.only_cells: 'adc'",
               'objective.adc.nu: 2.5'):
    assert line in result.stdout


def test_shards_can_share_the_study_workdir_at_once(tmp_path):
  config = _study_config('adc_ablation', shard='1/2', aggregate_only=True)
  with lock.hold(str(tmp_path)):  # another shard's process, running
    summary = main.run(config, str(tmp_path))
  assert summary['status'] == 'finished'


def test_finished_cell_is_skipped_unless_its_settings_changed(tmp_path):
  config = _study_config('adc_ablation', only_cells='baseline')
  cell_spec = study_runner.parse_cells(config.study)[0]
  directory = pathlib.Path(study_runner.cell_dir(str(tmp_path), 'baseline', 0))
  directory.mkdir(parents=True)
  (directory / 'summary.json').write_text(json.dumps(
      {'status': 'finished', 'pretrained': {'linear/top1': 0.5}}))
  saved = json.loads(config_lib.to_json(study_runner.build_cell_config(config, cell_spec, 0)))
  (directory / 'config.json').write_text(json.dumps(saved))
  summary = study_runner.run_study(config, str(tmp_path))  # trains nothing
  assert summary['ran'] == [] and summary['skipped'] == [('baseline', 0)]
  assert summary['results']['baseline']['linear/top1']['mean'] == 0.5
  saved['train']['num_steps'] = 99
  (directory / 'config.json').write_text(json.dumps(saved))
  with pytest.raises(ValueError, match='train.num_steps'):
    study_runner.run_study(config, str(tmp_path))
  # With a checkpoint, its config decides, not config.json (which a hand can edit).
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from glf_jax.run import checkpoint  # pylint: disable=g-import-not-at-top

  def checkpoint_with(num_steps):
    shutil.rmtree(directory / 'checkpoints', ignore_errors=True)
    trained = json.loads(json.dumps(saved))
    trained['train']['num_steps'] = num_steps
    with checkpoint.Checkpointer(str(directory / 'checkpoints'), async_save=False) as ckpt:
      ckpt.save(1, {'w': jnp.zeros(2)}, data_state={}, meta={'config': json.dumps(trained)})

  cell_json = config_lib.to_json(study_runner.build_cell_config(config, cell_spec, 0))
  steps = json.loads(cell_json)['train']['num_steps']
  checkpoint_with(steps)  # config.json still says 99
  assert study_runner.run_study(config, str(tmp_path))['skipped'] == [('baseline', 0)]
  checkpoint_with(steps + 1)
  (directory / 'config.json').write_text(cell_json)  # an edit hiding the difference
  with pytest.raises(ValueError, match='train.num_steps'):
    study_runner.run_study(config, str(tmp_path))


@pytest.mark.slow  # trains 2 cells with the prototype_bias evaluator (~60 s)
def test_prototype_bias_smoke_end_to_end(tmp_path):
  config = _study_config('prototype_bias')
  summary = main.run(config, str(tmp_path))
  assert summary['status'] == 'finished' and summary['missing'] == []
  cutout = json.loads((tmp_path / 'cells' / 'cutout' / 'seed0' / 'config.json').read_text())
  for view in ('view1', 'view2'):
    assert cutout['augment'][view]['cutout_prob'] == 0.5
  rows = _read_csv(tmp_path / 'results.csv')
  assert [r['cell'] for r in rows] == ['base', 'cutout']
  for r in rows:
    assert float(r['prototype_bias/raw']) > float(r['prototype_bias/normalized']) > 0
  markdown = (tmp_path / 'results.md').read_text(encoding='utf-8')
  assert '## Correlations' in markdown and '## Paired differences from `base`' in markdown
  assert len((tmp_path / 'commands.txt').read_text().splitlines()) == 1  # what ran the cells
  assert '| linear/top1 vs prototype_bias/normalized | all | 2 | nan |' in markdown  # n < 3
  _assert_png(tmp_path / 'accuracy_vs_bias_normalized.png')


@pytest.mark.optimized  # runs far longer than it compiles
@pytest.mark.slow  # trains 2 cohort cells of 2 members (~50 s)
def test_cl_vs_nscl_smoke_study_of_cohorts_end_to_end(tmp_path):
  config = _study_config('cl_vs_nscl')
  summary = main.run(config, str(tmp_path))
  assert summary['status'] == 'finished' and summary['missing'] == []
  t1 = json.loads((tmp_path / 'cells' / 't1' / 'seed0' / 'config.json').read_text())
  assert t1['mode'] == 'cohort' and 'study' not in t1
  assert t1['cohort']['members']['cl']['objective']['simclr']['temperature'] == 1.0
  assert t1['cohort']['members']['nscl']['objective']['nscl']['temperature'] == 1.0
  tracks = [json.loads(line) for line in
            (tmp_path / 'cells' / 't1' / 'seed0' / 'tracks.jsonl').read_text().splitlines()]
  assert [t['step'] for t in tracks] == [0, 2, 4]
  assert tracks[0]['pair/cl-nscl/cka_h'] == pytest.approx(1.0, abs=1e-6)
  rows = _read_csv(tmp_path / 'results.csv')
  assert [r['cell'] for r in rows] == ['main', 't1']
  for r in rows:  # the last tracked values
    assert 0 < float(r['pair/cl-nscl/cka_h']) <= 1 + 1e-6
    assert float(r['pair/cl-nscl/weight_gap_sum']) > 0
    assert r['pair/ce-cl/cka_h'] == ''  # no CE member in the smoke cells
  for name in ('temperature_cka_h.png', 'over_training_cka_h.png', 'main_cka_h.png'):
    _assert_png(tmp_path / name)


def test_study_cell_may_add_a_cohort_member_but_not_misspell_a_key():
  config = _study_config('cl_vs_nscl', arg='mini')
  main_cell = study_runner.parse_cells(config.study)[0]
  assert main_cell.name == 'main'
  run_config = study_runner.build_cell_config(config, main_cell, 3)
  assert sorted(run_config.cohort.members) == ['ce', 'cl', 'nscl', 'supcon']
  assert run_config.seed == 3 and run_config.mode == 'cohort' and 'study' not in run_config
  assert sorted(config.cohort.members) == ['cl', 'nscl']  # the study's own config is untouched
  bad = study_runner.Cell('bad', {'cohort.member.ce.objective.name': 'ce'}, {}, None, 'cohort')
  with pytest.raises(ValueError, match="no 'cohort.member'"):
    study_runner.build_cell_config(config, bad, 0)


def _write_summary(tmp_path, name, seed, summary, tracks=()):
  directory = pathlib.Path(study_runner.cell_dir(str(tmp_path), name, seed))
  directory.mkdir(parents=True)
  (directory / 'summary.json').write_text(json.dumps({'status': 'finished', **summary}))
  if tracks:
    (directory / 'tracks.jsonl').write_text(''.join(json.dumps(t) + '\n' for t in tracks))


def test_scatter_correlations_and_track_figures_on_synthetic_cells(tmp_path):
  config = _study_config('prototype_bias', arg='mini')
  names = [c.name for c in study_runner.parse_cells(config.study)]
  # Recipe cells: accuracy falls exactly linearly with the normalised bias (r = -1), and the
  # raw bias is its square (Spearman -1, Pearson close to but not -1).
  bias = {'base': 0.1, 'cutout': 0.2, 'rotation': 0.3, 'noise': 0.4}
  for name in names:
    for seed in (0, 1, 2):
      b = bias.get(name, 0.25) + 0.01 * seed
      _write_summary(tmp_path, name, seed, {'mode': 'pretrain', 'pretrained': {
          'linear/top1': 1.0 - b, 'knn/k20': 0.5, 'prototype_bias/raw': 10 * b * b,
          'prototype_bias/normalized': b}})
  result = aggregate_lib.aggregate(config, str(tmp_path), command='x')
  assert result['missing'] == []
  markdown = (tmp_path / 'results.md').read_text(encoding='utf-8')
  # 4 recipe cells x 3 seeds; r over runs and over cell means.
  assert ('| linear/top1 vs prototype_bias/normalized | all | 12 | -1.000 | 0.000 | -1.000 | 4 | '
          '-1.000 | 0.000 |') in markdown
  raw_line = next(l for l in markdown.splitlines() if 'vs prototype_bias/raw' in l)
  _, _, _, _, r_raw, p_raw, rho_raw, _, _, p_means, _ = raw_line.split('|')
  # The raw bias is 10 b^2: Pearson's r and its p as scipy gives them for these 12 points.
  b = np.array([bias[n] + 0.01 * s for n in ('base', 'cutout', 'rotation', 'noise')
                for s in (0, 1, 2)])
  expected = scipy.stats.pearsonr(10 * b * b, 1.0 - b)
  assert float(r_raw) == pytest.approx(expected.statistic, abs=5e-4) and -1.0 < float(r_raw)
  assert float(p_raw) == pytest.approx(expected.pvalue, abs=5e-4)
  assert rho_raw.strip() == '-1.000' and 0.0 < float(p_means) < 0.05
  _assert_png(tmp_path / 'accuracy_vs_bias_normalized.png')

  # Track figures read each seed's tracks.jsonl; a cell without tracks draws nothing.
  cohorts = _study_config('cl_vs_nscl', arg='mini')
  track_dir = tmp_path / 'cohorts'
  for seed in (0, 1):
    _write_summary(track_dir, 'main', seed, {'mode': 'cohort', 'metrics': {
        'pair/cl-nscl/cka_h': 0.9}}, tracks=[
            {'step': s, 'pair/cl-nscl/cka_h': 1.0 - 0.001 * s * (seed + 1),
             'pair/cl-supcon/cka_h': 1.0 - 0.002 * s, 'pair/ce-cl/cka_h': 1.0 - 0.003 * s,
             'pair/cl-nscl/weight_gap_sum': 0.01 * s} for s in (0, 20, 40)])
  aggregate_lib.aggregate(cohorts, str(track_dir), command='x')
  for name in ('over_training_cka_h.png', 'over_training_weight_gap.png', 'main_cka_h.png'):
    _assert_png(track_dir / name)
  rows = aggregate_lib.collect(cohorts, str(track_dir))
  steps, mean, std = aggregate_lib._tracked(rows, 'main', 'pair/cl-nscl/cka_h')  # pylint: disable=protected-access
  np.testing.assert_allclose(steps, [0, 20, 40])
  np.testing.assert_allclose(mean, [1.0, 0.97, 0.94])
  np.testing.assert_allclose(std, np.std([[1.0, 0.98, 0.96], [1.0, 0.96, 0.92]], axis=0, ddof=1))
  assert aggregate_lib._tracked(rows, 't0.1', 'pair/cl-nscl/cka_h') is None  # pylint: disable=protected-access


@pytest.mark.parametrize('spec, message', [
    (dict(kind='scatter', metric='linear/top1'), 'x must be a metric name'),
    (dict(kind='scatter', metric='linear/top1', x='nope/metric'), 'must be one of study.metrics'),
    (dict(kind='bar', metric='nope/metric'), 'must be one of study.metrics'),
    (dict(kind='bar', metric='linear/top1', metrics=['a']), 'for a track figure only'),
])
def test_bad_figures_are_refused(spec, message):
  config = _study_config('prototype_bias', arg='mini')
  with config.unlocked():
    config.study.figures = (json.dumps(spec),)
  with pytest.raises(ValueError, match=message):
    study_runner.parse_figures(config.study)


def test_paired_differences_from_the_reference_cell(tmp_path):
  values = {('a1_l1', 0): 0.70, ('a1_l1', 1): 0.80, ('a1_l1', 2): 0.90,
            ('a1_l2', 0): 0.72, ('a1_l2', 1): 0.83, ('a1_l2', 2): 0.91,
            ('a2_l1', 1): 0.75}                    # one seed in common with the reference
  config = _synthetic_study(tmp_path, values)
  with config.unlocked():
    config.study.compare_to = 'a1_l1'
  aggregate_lib.aggregate(config, str(tmp_path), command='x')
  markdown = (tmp_path / 'results.md').read_text(encoding='utf-8')
  assert '## Paired differences from `a1_l1`' in markdown
  diffs = [0.02, 0.03, 0.01]
  line = next(l for l in markdown.splitlines() if l.startswith('| `a1_l2` |') and '[' in l)
  assert (f'+{np.mean(diffs):.4f} ± {np.std(diffs, ddof=1):.4f} (n=3) '
          '[+0.0200, +0.0300, +0.0100]') in line
  line = next(l for l in markdown.splitlines() if l.startswith('| `a2_l1` |') and '[' in l)
  assert '-0.0500 ± — (n=1) [-0.0500]' in line
  assert '| `a2_l2` | — | — |' in markdown   # no finished seed
  with config.unlocked():
    config.study.compare_to = 'nope'
  with pytest.raises(ValueError, match='study.compare_to must name a cell'):
    aggregate_lib.aggregate(config, str(tmp_path), command='x')


def _fake_runs(monkeypatch, value_of):
  """``modes.run`` replaced by a run that finishes at once with ``linear/top1 = value_of(cell,
  seed)``; returns the list of (cell, seed) it was called for."""
  from glf_jax import modes  # pylint: disable=g-import-not-at-top
  calls = []

  def fake_run(config, workdir):
    cell_name, seed = pathlib.Path(workdir).parent.name, config.seed
    calls.append((cell_name, seed))
    os.makedirs(workdir, exist_ok=True)
    summary = {'mode': 'pretrain', 'status': 'finished', 'train_seconds': 1.0,
               'pretrained': {'linear/top1': value_of(cell_name, seed), 'knn/k20': 0.5},
               'random_init': {'linear/top1': 0.3, 'knn/k20': 0.2},
               'raw_pixels': {'linear/top1': 0.35, 'knn/k20': 0.3}}
    pathlib.Path(workdir, 'summary.json').write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(modes, 'run', fake_run)
  return calls


def _comparison_study(cells_dir, seeds=(0, 1, 2)):
  config = _study_config('adc_ablation', seeds=seeds, cells_dir=cells_dir)
  with config.unlocked():
    config.study.comparisons = (
        study_runner.comparison('adc', 'baseline', expect='+', claim='ADC helps'),)
  return config


def test_cells_are_recorded_skipped_and_aggregated_from_two_machines(tmp_path, monkeypatch):
  """Two "machines" (two workdirs, two record folders) each run a shard; the records alone,
  read together, give the whole study's tables."""
  value = {('baseline', 0): 0.60, ('baseline', 1): 0.62, ('baseline', 2): 0.61,
           ('adc', 0): 0.63, ('adc', 1): 0.66, ('adc', 2): 0.64}
  calls = _fake_runs(monkeypatch, lambda c, s: value[c, s])
  a, b = tmp_path / 'machine_a', tmp_path / 'machine_b'
  for shard, machine in (('0/2', a), ('1/2', b)):
    config = _comparison_study(str(machine / 'cells'))
    config.study.shard = shard
    study_runner.run_study(config, str(machine / 'work'))
  assert sorted(calls) == sorted(value)
  records = sorted(p.relative_to(tmp_path) for p in tmp_path.glob('machine_*/cells/*/seed*.json'))
  assert len(records) == 6
  record = json.loads((a / 'cells' / 'baseline' / 'seed0.json').read_text())
  assert record['metrics']['linear/top1'] == 0.60 and record['metrics']['raw_pixels/knn/k20'] == 0.3
  assert record['machine']['cores'] and record['machine']['jax'] and record['config']['seed'] == 0
  # Aggregated from the records alone, in a third place: every value and the comparison.
  both = f'{a / "cells"},{b / "cells"}'
  config = _comparison_study(both)
  config.study.aggregate_only = True
  summary = study_runner.run_study(config, str(tmp_path / 'report'))
  assert summary['missing'] == []
  assert summary['results']['adc']['linear/top1']['mean'] == pytest.approx(0.6433333)
  report = json.loads((tmp_path / 'report' / 'results.json').read_text())
  (adc,) = report['comparisons']
  assert adc['differences'] == pytest.approx([0.03, 0.04, 0.03])
  assert adc['verdict'] == 'separated' and adc['p'] < 0.01
  markdown = (tmp_path / 'report' / 'results.md').read_text()
  assert '## Comparisons' in markdown and '**separated**' in markdown
  assert '| +0.0333 ± 0.0058 | +0.0300, +0.0400, +0.0300 |' in markdown  # mean, then per seed
  assert '## Baselines' in markdown and '0.3500 ± 0.0000' in markdown
  assert '## Machines' in markdown
  # A study that reads the records trains nothing more; a record of other settings is refused.
  calls.clear()
  study_runner.run_study(_comparison_study(both), str(tmp_path / 'again'))
  assert calls == []
  changed = _comparison_study(both)
  changed.optim.base_learning_rate = 1.0
  with pytest.raises(ValueError, match='recorded with other settings.*optim.base_learning_rate'):
    study_runner.run_study(changed, str(tmp_path / 'changed'))
  # One (cell, seed) recorded on two machines is refused: keep one.
  (b / 'cells' / 'baseline').mkdir(exist_ok=True)
  (b / 'cells' / 'baseline' / 'seed0.json').write_text(
      (a / 'cells' / 'baseline' / 'seed0.json').read_text())
  with pytest.raises(ValueError, match='recorded twice'):
    study_runner.run_study(config, str(tmp_path / 'report'))


@pytest.mark.parametrize('name', ['adc_ablation', 'balanced_grid', 'prototype_bias', 'cl_vs_nscl'])
def test_midi_studies_build_and_check_every_run(name, tmp_path):
  """The CIFAR-10 tier: every (cell, seed) builds and validates (nothing trains), at 16 px, with
  comparisons naming real cells and metrics."""
  config = _study_config(name, 'midi')
  runs = study_runner.plan(config.study)
  configs = study_runner._check_runs(config, runs, str(tmp_path))  # pylint: disable=protected-access
  assert len(configs) == len(runs) and len(config.study.seeds) >= 3
  for run_config in configs.values():
    assert run_config.data.name == 'cifar10' and run_config.data.image_size == 16
    assert run_config.eval.transform.image_size == 16 and run_config.augment.view1.image_size == 16
  assert study_runner.parse_comparisons(config.study)
  if name == 'adc_ablation':  # a prior made by the same seed's baseline run, in this study
    prior = configs['adc_simclr_prior', 1].prior
    assert prior.kind == 'checkpoint'
    assert prior.path == os.path.join(str(tmp_path), 'cells', 'baseline', 'seed1')
  if name == 'cl_vs_nscl':
    main_cell = configs['main', 0]
    assert main_cell.train.sampler == 'stratified'
    temperatures = {m: main_cell.cohort.members[m].objective.to_dict()
                    for m in main_cell.cohort.members}
    assert all(t[t['name']]['temperature'] == 0.5 for m, t in temperatures.items() if m != 'ce')
    assert configs['c2', 0].train.num_steps == configs['c5', 0].train.num_steps
    assert configs['c2', 0].cohort.probe_examples == main_cell.cohort.probe_examples == 2000
