"""A study's tables and figures, from whatever cells' ``summary.json`` files exist.

``aggregate(config, workdir)`` writes, in the study's workdir:

* ``results.csv``: one row per planned (cell, seed): cell, seed, status (``finished``,
  ``interrupted``, ``missing``, ...), the cells' override keys as columns, every reported metric,
  ``train_seconds``;
* ``results.md``: per cell, each metric's mean ± sample std (ddof = 1; ``—`` for one seed) over
  its finished seeds, n, and the paper's value beside it where the cell gives one; a header with
  the command, the seeds and which (cell, seed) runs are missing; with ``study.compare_to``, each
  cell's paired per-seed differences from that cell; for each ``scatter`` figure, Pearson's and
  Spearman's r over runs and Pearson's r over cell means;
* the PNG figures of ``study.figures`` (matplotlib's ``Figure``, no display needed).

A partial study (a shard, an interrupted run, a deleted cell) aggregates what exists and lists
the rest as missing. ``--config.study.aggregate_only=True`` reruns only this.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from typing import Any, Sequence

import numpy as np

from glf_jax.plots import study as plots_study
from glf_jax.plots import tracks as plots_tracks
from glf_jax.run import records
from glf_jax.runtime import fileio
from glf_jax.study import cells as cells_lib
from glf_jax.study import spec as study_spec
from glf_jax.study import stats

RESULTS_CSV = 'results.csv'
RESULTS_MD = 'results.md'
RESULTS_JSON = 'results.json'
DASH = '—'


def metric_value(summary: dict, metric: str) -> float | None:
  """``metric`` from a cell's summary: its ``pretrained`` evaluation, else a top-level or
  ``metrics`` entry (cohort cells); None if absent or not a number."""
  for where in (summary.get('pretrained'), summary.get('metrics'), summary):
    if isinstance(where, dict) and isinstance(where.get(metric), (int, float)):
      return float(where[metric])
  return None


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
  """Mean and sample standard deviation (ddof = 1; None for fewer than two values)."""
  values = np.asarray(values, np.float64)
  if values.size == 0:
    return math.nan, None
  return float(values.mean()), (float(values.std(ddof=1)) if values.size > 1 else None)


def collect(config, workdir: str) -> list[dict[str, Any]]:
  """One row per planned (cell, seed), in the study's cell order then seed order: from its
  record in ``study.cells_dir`` when it has one (``glf_jax.study.cells``), else from its run's
  ``summary.json`` in the workdir."""
  study = config.study
  cells = study_spec.selected_cells(study)
  seeds = study_spec.check_seeds(study)
  recorded = cells_lib.read_all(study.get('cells_dir'))
  rows = []
  for c in cells:
    for seed in seeds:
      record = recorded.get((c.name, seed))
      directory = study_spec.cell_dir(workdir, c.name, seed)
      if record is not None:
        status, values, seconds = 'finished', record['metrics'], record.get('train_seconds')
      else:
        summary = records.read_summary(directory)
        status = summary.get('status', 'missing') if summary else 'missing'
        if status == 'finished' and not study_spec.is_finished(summary, c.mode):
          status = 'not evaluated'
        values = {**cells_lib.flat_metrics(summary),
                  **{m: metric_value(summary, m) for m in study.metrics}}
        seconds = summary.get('train_seconds')
      finished = status == 'finished'
      rows.append({
          'cell': c.name, 'seed': seed, 'status': status, 'overrides': c.overrides,
          'metrics': {m: values.get(m) if finished else None for m in study.metrics},
          'all_metrics': values if finished else {},
          'train_seconds': seconds, 'dir': directory, 'record': record})
  return rows


def summarize(rows: Sequence[dict], cells: Sequence[study_spec.Cell],
              metrics: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
  """``{cell: {metric: {'mean', 'std', 'n', 'values', 'paper'}}}`` over finished seeds."""
  table = {}
  for c in cells:
    mine = [r for r in rows if r['cell'] == c.name and r['status'] == 'finished']
    table[c.name] = {}
    for m in metrics:
      values = [r['metrics'][m] for r in mine if r['metrics'].get(m) is not None]
      mean, std = mean_std(values)
      table[c.name][m] = {'mean': mean, 'std': std, 'n': len(values), 'values': values,
                          'paper': c.paper.get(m)}
  return table


def _format_value(value) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    return f'{value:.6g}'
  if isinstance(value, (list, tuple)):
    return ' '.join(str(v) for v in value)
  return str(value)


def _csv_text(rows: Sequence[dict], override_keys: Sequence[str],
              metrics: Sequence[str]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(['cell', 'seed', *override_keys, *metrics, 'train_seconds', 'status'])
  for r in rows:
    writer.writerow([r['cell'], r['seed'],
                     *[_format_value(r['overrides'].get(k)) for k in override_keys],
                     *[_format_value(r['metrics'].get(m)) for m in metrics],
                     _format_value(r['train_seconds']), r['status']])
  return out.getvalue()


def format_mean_std(stats: dict[str, Any]) -> str:
  if stats['n'] == 0:
    return DASH
  std = DASH if stats['std'] is None else f'{stats["std"]:.4f}'
  return f'{stats["mean"]:.4f} ± {std}'


def _markdown(config, rows, cells, table, figures, compared, fitted, *, command: str,
              workdir: str) -> str:
  study = config.study
  metrics = list(study.metrics)
  seeds = study_spec.check_seeds(study)
  with_paper = [m for m in metrics if any(c.paper.get(m) is not None for c in cells)]
  trained_by = study_spec.read_commands(workdir)
  if trained_by and command not in trained_by:  # an aggregate-only run: say both
    made_by = ['Cells run by: ' + '; '.join(f'`{c}`' for c in trained_by) + '  ',
               f'Tables written by: `{command}`  ']
  else:
    made_by = [f'Made by: `{command}`  ']
  not_done = [r for r in rows if r['status'] != 'finished']
  finished = len(rows) - len(not_done)
  lines = [
      f'# Study `{study.name}`',
      '',
      *made_by,
      f'Regenerate from the cells: the same command with `--config.study.aggregate_only=True`  ',
      f'Workdir: `{workdir}`  ',
      f'Seeds: {", ".join(str(s) for s in seeds)}; {len(cells)} cells; {finished} of {len(rows)} '
      'runs finished.',
      '',
      'Each value: mean ± sample standard deviation (ddof = 1; — for a single seed) over the '
      'finished seeds of the cell, n = their number; the paper\'s value, where the study gives '
      'one, beside it (same units).',
      '',
  ]
  if not_done:
    lines.append('**Missing** (no finished, evaluated `summary.json`):')
    lines.append('')
    for c in cells:
      missing = [r for r in not_done if r['cell'] == c.name]
      if missing:
        lines.append(f'- `{c.name}`: ' + ', '.join(f'seed {r["seed"]} ({r["status"]})'
                                                  for r in missing))
    lines.append('')
  else:
    lines += ['Missing: none.', '']
  header = ['cell', 'overrides']
  for m in metrics:
    header.append(m)
    if m in with_paper:
      header.append(f'{m} (paper)')
  header.append('n')
  lines.append('| ' + ' | '.join(header) + ' |')
  lines.append('|' + '---|' * len(header))
  for c in cells:
    overrides = ', '.join(f'{k}={_format_value(v)}' for k, v in c.overrides.items()) or '(base)'
    if c.base:
      overrides = f'base {c.base}; {overrides}'
    row = [f'`{c.name}`', overrides]
    counts = {table[c.name][m]['n'] for m in metrics if table[c.name][m]['n']} or {0}
    for m in metrics:
      stats = table[c.name][m]
      text = format_mean_std(stats)
      if len(counts) > 1 and stats['n']:
        text += f' (n={stats["n"]})'
      row.append(text)
      if m in with_paper:
        paper = stats['paper']
        row.append(DASH if paper is None else f'{paper:.4f}')
    row.append(str(max(counts) if counts else 0))
    lines.append('| ' + ' | '.join(row).replace('\n', ' ') + ' |')
  lines.append('')
  lines += baseline_lines(rows, cells, metrics)
  lines += comparison_lines(compared)
  lines += paired_lines(rows, cells, metrics, study_spec.check_compare_to(study))
  lines += correlation_lines(config, rows, cells, figures)
  lines += fit_lines(fitted)
  lines += machine_lines(rows)
  return '\n'.join(lines)


def paired_differences(rows: Sequence[dict], cell_name: str, reference: str,
                       metric: str, reference_metric: str | None = None) -> list[float]:
  """``metric`` of ``cell_name`` minus ``reference_metric`` (default ``metric``) of
  ``reference``, per seed both finished."""
  value = {(r['cell'], r['seed'], m): r['metrics'].get(m) for r in rows
           if r['status'] == 'finished' for m in r['metrics']}
  other = reference_metric or metric
  seeds = sorted({r['seed'] for r in rows})
  return [value[cell_name, s, metric] - value[reference, s, other] for s in seeds
          if value.get((cell_name, s, metric)) is not None
          and value.get((reference, s, other)) is not None]


def paired_lines(rows, cells, metrics, reference: str | None) -> list[str]:
  """``results.md``'s table of paired differences from ``reference`` (none without one)."""
  if reference is None:
    return []
  lines = [f'## Paired differences from `{reference}`', '',
           f'Each cell minus `{reference}` seed by seed (a seed gives every cell the same initial '
           'parameters and batch order), mean ± sample std over the seeds both finished, n; the '
           'per-seed values in brackets.', '',
           '| cell | ' + ' | '.join(metrics) + ' |', '|---|' + '---|' * len(metrics)]
  for c in cells:
    if c.name == reference:
      continue
    row = [f'`{c.name}`']
    for m in metrics:
      diffs = paired_differences(rows, c.name, reference, m)
      if not diffs:
        row.append(DASH)
        continue
      mean, std = mean_std(diffs)
      mean = round(mean, 12) + 0.0  # a float sum's -1e-17 is +0.0000, not -0.0000
      std_text = DASH if std is None else f'{std:.4f}'
      row.append(f'{mean:+.4f} ± {std_text} (n={len(diffs)}) ['
                 + ', '.join(f'{d:+.4f}' for d in diffs) + ']')
    lines.append('| ' + ' | '.join(row) + ' |')
  return lines + ['']


def compare_cells(rows: Sequence[dict], comparisons: Sequence[dict]) -> list[dict]:
  """Each comparison's paired statistics and verdict (``glf_jax.study.stats``), Holm-adjusted
  within its family."""
  out = []
  for spec in comparisons:
    differences = paired_differences(rows, spec['cell'], spec['reference'], spec['metric'],
                                     spec['reference_metric'])
    expect = {'+': 1, '-': -1}.get(spec.get('expect'))
    out.append({**spec, **stats.compare(differences, expect=expect)})
  for family in {c['family'] for c in out if c.get('family')}:
    stats.adjust_family([c for c in out if c.get('family') == family])
  return out


def _signed(value: float) -> str:
  return DASH if value is None or math.isnan(value) else f'{round(value, 12) + 0.0:+.4f}'


def comparison_lines(compared: Sequence[dict]) -> list[str]:
  """``results.md``'s comparisons: each claim's paired statistics, its per-seed differences (the
  seeds in order) and its verdict."""
  if not compared:
    return []
  lines = ['## Comparisons', '', stats.VERDICT_RULE, '',
           '| comparison | metric | paper | n | mean d ± sd | per seed | 95 % CI | p (family) | '
           'detectable | verdict |', '|---|---|---|---|---|---|---|---|---|---|']
  for c in compared:
    metric = (c['metric'] if c['reference_metric'] == c['metric']
              else f'{c["metric"]} − {c["reference_metric"]}')
    sd = DASH if math.isnan(c['std']) else f'{c["std"]:.4f}'
    p = DASH if math.isnan(c['p']) else f'{c["p"]:.3f}'
    if c.get('family') and not math.isnan(c['p']):
      p += f' ({c["p_adjusted"]:.3f} in {c["family"]})'
    expect = {'+': ' (expects +)', '-': ' (expects −)'}.get(c.get('expect'), '')
    lines.append(f'| `{c["name"]}`{expect} | {metric} | {c.get("paper") or DASH} | '
                 f'{c["n"]} | {_signed(c["mean"])} ± {sd} | '
                 f'{", ".join(_signed(d) for d in c["differences"]) or DASH} | '
                 f'[{_signed(c["ci_low"])}, '
                 f'{_signed(c["ci_high"])}] | {p} | {_signed(c["mde"]).lstrip("+")} | '
                 f'**{c["verdict"]}** |')
  return lines + ['']


def baselines(rows: Sequence[dict], cells, metrics: Sequence[str]) -> dict:
  """``{cell: {'random_init' | 'raw_pixels': {metric: {'mean', 'std', 'n'}}}}`` where measured."""
  out = {}
  for c in cells:
    mine = [r for r in rows if r['cell'] == c.name and r['status'] == 'finished']
    for prefix, key in (('random_init/', 'random_init'), ('raw_pixels/', 'raw_pixels')):
      for m in metrics:
        values = [r['all_metrics'][prefix + m] for r in mine if prefix + m in r['all_metrics']]
        if values:
          mean, std = mean_std(values)
          out.setdefault(c.name, {}).setdefault(key, {})[m] = {'mean': mean, 'std': std,
                                                               'n': len(values)}
  return out


def baseline_lines(rows: Sequence[dict], cells, metrics: Sequence[str]) -> list[str]:
  """``results.md``'s baselines: each cell's metrics of the same network at its random
  initialisation and of the raw pixels, beside the pretrained encoder's."""
  columns = [(prefix, label) for prefix, label in (('random_init/', 'random init'),
                                                   ('raw_pixels/', 'raw pixels'))
             if any(prefix + m in r['all_metrics'] for r in rows for m in metrics)]
  if not columns:
    return []
  header = ['cell'] + [f'{m} ({label})' for m in metrics for _, label in
                       [('', 'pretrained')] + columns]
  lines = ['## Baselines', '', 'Each cell\'s pretrained encoder beside the same network at '
           'its random initialisation and the raw pixels (resized and normalised as the '
           'encoder\'s input), mean ± std over the finished seeds.', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for c in cells:
    mine = [r for r in rows if r['cell'] == c.name and r['status'] == 'finished']
    row = [f'`{c.name}`']
    for m in metrics:
      for prefix, _ in [('', 'pretrained')] + columns:
        values = [r['all_metrics'][prefix + m] for r in mine if prefix + m in r['all_metrics']]
        mean, std = mean_std(values)
        row.append(format_mean_std({'mean': mean, 'std': std, 'n': len(values)}))
    lines.append('| ' + ' | '.join(row) + ' |')
  return lines + ['']


def _r_squared(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
  """``(slope, intercept, R²)`` of the least-squares line of ``y`` on ``x``."""
  slope, intercept = np.polyfit(x, y, 1)
  residual = np.sum((y - (slope * x + intercept)) ** 2)
  total = np.sum((y - y.mean()) ** 2)
  return float(slope), float(intercept), float(1 - residual / total) if total > 0 else math.nan


def growth_fits(rows: Sequence[dict], fits: Sequence[dict]) -> list[dict]:
  """Each fit of ``study.fits``, per finished seed: the log-linear (exponential) and the linear
  fit of the tracked metric against the step, over the positive values after ``after_step``."""
  out = []
  for spec in fits:
    for r in rows:
      if r['cell'] != spec['cell'] or r['status'] != 'finished':
        continue
      tracks = r['record']['tracks'] if r['record'] else plots_tracks.read_tracks(r['dir'])
      points = sorted((t['step'], t[spec['metric']]) for t in tracks
                      if t['step'] > spec['after_step'] and isinstance(t.get(spec['metric']),
                                                                        (int, float))
                      and t[spec['metric']] > 0)
      if len(points) < 3:
        continue
      steps, values = (np.asarray(c, np.float64) for c in zip(*points))
      rate, _, r2_exp = _r_squared(steps, np.log(values))
      slope, _, r2_line = _r_squared(steps, values)
      out.append({**spec, 'seed': r['seed'], 'points': len(points),
                  'first_step': int(steps[0]), 'last_step': int(steps[-1]),
                  'rate_per_1000_steps': 1000 * rate,
                  'doubling_steps': math.log(2) / rate if rate > 0 else math.inf,
                  'r2_exponential': r2_exp, 'slope_per_1000_steps': 1000 * slope,
                  'r2_linear': r2_line})
  return out


def fit_lines(fitted: Sequence[dict]) -> list[str]:
  if not fitted:
    return []
  lines = ['## Growth fits', '', 'Per seed, over the tracked steps in the given range: '
           '`log(metric) = a + b·step` (exponential growth; b per 1000 steps, the doubling '
           'time) beside the straight line `metric = a + b·step`, each with its R² (the larger '
           'R² is the better description).', '',
           '| cell | metric | seed | steps | log-linear b /1000 steps | doubling (steps) | '
           'R² (exponential) | linear slope /1000 steps | R² (linear) |',
           '|---|---|---|---|---|---|---|---|---|']
  for f in fitted:
    lines.append(f'| `{f["cell"]}` | {f["metric"]} | {f["seed"]} | {f["first_step"]}–'
                 f'{f["last_step"]} ({f["points"]}) | {f["rate_per_1000_steps"]:.4f} | '
                 f'{f["doubling_steps"]:.0f} | {f["r2_exponential"]:.4f} | '
                 f'{f["slope_per_1000_steps"]:.4f} | {f["r2_linear"]:.4f} |')
  return lines + ['']


def machine_lines(rows: Sequence[dict]) -> list[str]:
  """``results.md``'s provenance: which machines ran the recorded cells."""
  machines: dict[tuple, list[str]] = {}
  for r in rows:
    if r['record']:
      m = r['record'].get('machine', {})
      key = (m.get('host'), m.get('cpu'), m.get('cores'), m.get('jax'), m.get('glf_jax_commit'))
      machines.setdefault(key, []).append(f'{r["cell"]}/{r["seed"]}')
  if not machines:
    return []
  lines = ['## Machines', '', 'The machines that ran the recorded cells (a cell repeats bit for '
           'bit on its machine, not across machines).', '',
           '| host | CPU | cores | jax | glf_jax commit | runs |', '|---|---|---|---|---|---|']
  for (host, cpu, cores, jax_version, commit), runs in machines.items():
    lines.append(f'| {host} | {cpu} | {cores} | {jax_version} | {commit} | {len(runs)} |')
  return lines + ['']


def _pearson_spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
  """Pearson's r, its two-sided p (independent points assumed) and Spearman's ρ (ties share
  their average rank); nan when either side is constant or n < 3."""
  import scipy.stats  # pylint: disable=g-import-not-at-top  (only the correlation tables)
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return math.nan, math.nan, math.nan
  pearson = scipy.stats.pearsonr(x, y)
  return (float(pearson.statistic), float(pearson.pvalue),
          float(scipy.stats.spearmanr(x, y).statistic))


def scatter_points(config, spec: dict, rows: Sequence[dict], cells) -> dict[str, list[tuple]]:
  """``{group: [(cell, seed, x, y), ...]}`` of a scatter figure's finished runs; the group is
  the cell's value of ``series`` (``'all'`` without one)."""
  chosen = _figure_cells(spec, cells)
  series = spec.get('series')
  values = _cell_values(config, chosen, [series]) if series else {}
  names = {c.name for c in chosen}
  groups: dict[str, list[tuple]] = {}
  for r in rows:
    if r['cell'] not in names or r['status'] != 'finished':
      continue
    x, y = r['metrics'].get(spec['x']), r['metrics'].get(spec['metric'])
    if x is None or y is None:
      continue
    group = f'{series}={values[r["cell"]][series]}' if series else 'all'
    groups.setdefault(group, []).append((r['cell'], r['seed'], x, y))
  return groups


def correlation_lines(config, rows, cells, figures) -> list[str]:
  """``results.md``'s correlation table: one row per scatter figure and group, over runs and
  over cell means."""
  lines = []
  for spec in figures:
    if spec['kind'] != 'scatter':
      continue
    for group, points in scatter_points(config, spec, rows, cells).items():
      r_runs, p_runs, rho_runs = _pearson_spearman([p[2] for p in points],
                                                   [p[3] for p in points])
      by_cell: dict[str, list[tuple]] = {}
      for p in points:
        by_cell.setdefault(p[0], []).append(p)
      means = [(np.mean([p[2] for p in ps]), np.mean([p[3] for p in ps]))
               for ps in by_cell.values()]
      r_cells, p_cells, _ = _pearson_spearman([m[0] for m in means], [m[1] for m in means])
      lines.append(f'| {spec["metric"]} vs {spec["x"]} | {group} | {len(points)} | '
                   f'{r_runs:.3f} | {p_runs:.3f} | {rho_runs:.3f} | {len(means)} | '
                   f'{r_cells:.3f} | {p_cells:.3f} |')
  if not lines:
    return []
  return ['## Correlations', '',
          "Pearson's r with its two-sided p (and Spearman's ρ) over the finished runs (one point "
          "per cell and seed), and over the cells' means; nan: fewer than 3 points or a constant "
          "side. The runs of one seed share their initial parameters and batch order, so they "
          "are not independent and the p over runs is optimistic; the p over cell means has "
          "as many points as cells.",
          '', '| metrics | group | runs | r (runs) | p | ρ (runs) | cells | r (cell means) | p |',
          '|---|---|---|---|---|---|---|---|---|', *lines, '']


def _figure_file(spec: dict) -> str:
  if spec.get('file'):
    name = spec['file']
  else:
    parts = [spec['kind'], spec['metric'], spec.get('x'), spec.get('y')]
    name = '_'.join(p for p in parts if p)
  name = re.sub(r'[^A-Za-z0-9_.=+-]', '_', name)
  return name if name.endswith('.png') else name + '.png'


def _cell_values(config, cells, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
  """Each cell's resolved value of each key (its override, else its run config's value)."""
  values = {}
  for c in cells:
    resolved = None
    values[c.name] = {}
    for key in keys:
      if key in c.overrides:
        values[c.name][key] = c.overrides[key]
      else:
        if resolved is None:
          resolved = study_spec.flattened(study_spec.build_cell_config(config, c, 0))
        values[c.name][key] = resolved.get(key)
  return values


def _figure_cells(spec, cells):
  if spec.get('cells'):
    by_name = {c.name: c for c in cells}
    return [by_name[n] for n in spec['cells'] if n in by_name]
  if spec['kind'] in ('bar', 'scatter', 'track'):
    return list(cells)
  keys = [spec['x']] + ([spec['y']] if spec['kind'] == 'heatmap' else [])
  return [c for c in cells if all(k in c.overrides for k in keys)]


def _number(value) -> float | None:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return float(value)


def _tracked(rows: Sequence[dict], cell_name: str, metric: str):
  """``(steps, mean, std)`` of a cohort cell's tracked ``metric`` over its finished seeds (the
  steps every seed tracked); None without data."""
  per_seed = []
  for r in rows:
    if r['cell'] == cell_name and r['status'] == 'finished':
      tracks = r['record']['tracks'] if r['record'] else plots_tracks.read_tracks(r['dir'])
      points = {t['step']: t[metric] for t in tracks
                if isinstance(t.get(metric), (int, float))}
      if points:
        per_seed.append(points)
  if not per_seed:
    return None
  steps = sorted(set.intersection(*[set(p) for p in per_seed]))
  values = np.array([[p[s] for s in steps] for p in per_seed], np.float64)
  std = values.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros(len(steps))
  return np.array(steps), values.mean(axis=0), std


def _track_data(config, spec, cells, table, rows):
  del config, table
  tracked = spec.get('metrics') or [spec['metric']]
  curves = []
  for c in _figure_cells(spec, cells):
    for m in tracked:
      curve = _tracked(rows, c.name, m)
      if curve is not None:
        curves.append((c.name if len(tracked) == 1 else f'{c.name}: {m}', *curve))
  return {'curves': curves, 'ylabel': spec['metric'] if len(tracked) == 1 else 'tracked value',
          'title_suffix': ' (mean ± std over seeds)'} if curves else None


def _scatter_data(config, spec, cells, table, rows):
  del table
  groups = scatter_points(config, spec, rows, cells)
  if not groups:
    return None
  rs = []
  for group, points in groups.items():
    r, _, _ = _pearson_spearman([p[2] for p in points], [p[3] for p in points])
    rs.append(f'{group}: r = {r:.2f} (n = {len(points)})' if len(groups) > 1
              else f'r = {r:.2f} (n = {len(points)})')
  return {'groups': groups, 'x': spec['x'], 'title_size': 9,
          'title': spec.get('title') or f'{config.study.name}: ' + '; '.join(rs)}


def _bar_data(config, spec, cells, table, rows):
  del config, rows
  metric = spec['metric']
  chosen = [c for c in _figure_cells(spec, cells) if table[c.name][metric]['n']]
  if not chosen:
    return None
  return {'names': [c.name for c in chosen],
          'means': [table[c.name][metric]['mean'] for c in chosen],
          'stds': [table[c.name][metric]['std'] or 0.0 for c in chosen],
          'paper': [(i, c.paper[metric]) for i, c in enumerate(chosen) if metric in c.paper]}


def _line_data(config, spec, cells, table, rows):
  del rows
  metric, x_key, series_key = spec['metric'], spec['x'], spec.get('series')
  chosen = [c for c in _figure_cells(spec, cells) if table[c.name][metric]['n']]
  values = _cell_values(config, chosen, [x_key] + ([series_key] if series_key else []))
  groups = {}
  for c in chosen:
    x = _number(values[c.name][x_key])
    if x is None or (spec.get('log_x') and x <= 0):
      continue
    label = str(values[c.name][series_key]) if series_key else metric
    stats = table[c.name][metric]
    groups.setdefault(label, []).append((x, stats['mean'], stats['std'] or 0.0))
  for points in groups.values():
    points.sort(key=lambda p: p[0])
  return {'groups': groups, 'x': x_key, 'series': series_key,
          'log_x': bool(spec.get('log_x'))} if groups else None


def _heatmap_data(config, spec, cells, table, rows):
  del rows
  metric, x_key, y_key = spec['metric'], spec['x'], spec['y']
  chosen = [c for c in _figure_cells(spec, cells) if table[c.name][metric]['n']]
  if not chosen:
    return None
  values = _cell_values(config, chosen, [x_key, y_key])
  xs = sorted({values[c.name][x_key] for c in chosen}, key=_sort_key)
  ys = sorted({values[c.name][y_key] for c in chosen}, key=_sort_key)
  grid = np.full((len(ys), len(xs)), np.nan)
  for c in chosen:
    grid[ys.index(values[c.name][y_key]), xs.index(values[c.name][x_key])] = (
        table[c.name][metric]['mean'])
  return {'xs': xs, 'ys': ys, 'grid': grid, 'x': x_key, 'y': y_key}


# What each figure kind draws, from the rows and the per-cell table (None: no data yet).
FIGURE_DATA = {'track': _track_data, 'scatter': _scatter_data, 'bar': _bar_data,
               'line': _line_data, 'heatmap': _heatmap_data}


def draw_figure(config, spec: dict, cells, table, path: str,
                rows: Sequence[dict] = ()) -> str | None:
  """Draws one figure to ``path``; None (nothing written) when no cell has data for it."""
  data = FIGURE_DATA[spec['kind']](config, spec, cells, table, rows)
  if data is None:
    return None
  title = spec.get('title') or f'{config.study.name}: {spec["metric"]}'
  data = {'metric': spec['metric'], 'title': title + data.pop('title_suffix', ''), **data}
  return plots_study.draw(spec['kind'], data, path)


def _sort_key(value):
  number = _number(value)
  return (0, number, '') if number is not None else (1, 0.0, str(value))


def _mean_train_seconds(rows) -> dict[str, float]:
  """Each cell's mean training time over its finished runs (the budget beside the accuracy; a
  machine's load changes it, the records name the machine)."""
  seconds = {}
  for r in rows:
    if r['status'] == 'finished' and r['train_seconds'] is not None:
      seconds.setdefault(r['cell'], []).append(float(r['train_seconds']))
  return {cell: sum(v) / len(v) for cell, v in seconds.items()}


def aggregate(config, workdir: str, command: str | None = None) -> dict[str, Any]:
  """Writes ``results.csv``, ``results.md`` and the figures; returns what it wrote, the
  per-cell statistics and the missing (cell, seed) pairs."""
  workdir = fileio.resolve(workdir)
  study = config.study
  cells = study_spec.selected_cells(study)
  figures = study_spec.parse_figures(study)
  metrics = list(study.metrics)
  rows = collect(config, workdir)
  table = summarize(rows, cells, metrics)
  compared = compare_cells(rows, study_spec.parse_comparisons(study))
  fitted = growth_fits(rows, study_spec.parse_fits(study))
  override_keys = study_spec.override_keys(cells)
  written = []
  path = fileio.join(workdir, RESULTS_CSV)
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    f.write(_csv_text(rows, override_keys, metrics))
  written.append(path)
  path = fileio.join(workdir, RESULTS_MD)
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    f.write(_markdown(config, rows, cells, table, figures, compared, fitted, workdir=workdir,
                      command=command or study_spec.command_line()))
  written.append(path)
  report = {'study': study.name, 'seeds': list(study.seeds),
            'cells': {c: {m: {k: v for k, v in st.items() if k != 'values'}
                          for m, st in ms.items()} for c, ms in table.items()},
            'baselines': baselines(rows, cells, metrics),
            'train_seconds': _mean_train_seconds(rows),
            'comparisons': compared, 'fits': fitted, 'verdict_rule': stats.VERDICT_RULE}
  path = fileio.join(workdir, RESULTS_JSON)
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=1, default=float)
    f.write('\n')
  written.append(path)
  skipped_figures = []
  for spec in figures:
    drawn = draw_figure(config, spec, cells, table, fileio.join(workdir, _figure_file(spec)),
                        rows)
    if drawn:
      written.append(drawn)
    else:
      skipped_figures.append(_figure_file(spec))
  missing = [[r['cell'], r['seed']] for r in rows if r['status'] != 'finished']
  print(f'study {study.name}: {len(rows) - len(missing)} of {len(rows)} runs finished; wrote '
        + ', '.join(os.path.basename(p) for p in written) + f' in {workdir}', flush=True)
  if skipped_figures:
    print(f'no finished cells for {", ".join(skipped_figures)} yet: not drawn', flush=True)
  if missing:
    print('missing: ' + ', '.join(f'{c} seed {s}' for c, s in missing), flush=True)
  return {'written': written, 'missing': missing, 'results': report['cells'], 'report': report}
