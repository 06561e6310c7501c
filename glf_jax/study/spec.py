"""A study's definition: its cells, seeds and figures (``config.study``), the plan of (cell, seed)
runs, each run's config, and the study workdir's layout (``cells/<cell>/seed<k>/``,
``study_config.json``, ``commands.txt``). ``glf_jax.study.runner`` runs the plan;
``glf_jax.study.aggregate`` tabulates it."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shlex
import sys
from typing import Any, Iterable

import ml_collections
from ml_collections import config_dict

from glf_jax import config as config_lib
from glf_jax.run import saved_config
from glf_jax.runtime import fileio

CELLS_DIR = 'cells'
STUDY_CONFIG = 'study_config.json'
COMMANDS = 'commands.txt'
CELL_MODES = ('pretrain', 'cohort')
FIGURE_KINDS = ('line', 'heatmap', 'bar', 'scatter', 'track')
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.=+-]*$')
_CELL_KEYS = ('name', 'overrides', 'paper', 'base', 'mode')
_COMPARISON_KEYS = ('name', 'cell', 'reference', 'metric', 'reference_metric', 'expect', 'family',
                    'claim', 'paper')
_FIT_KEYS = ('cell', 'metric', 'after_step')
_FIGURE_KEYS = ('kind', 'metric', 'x', 'y', 'cells', 'series', 'log_x', 'file', 'title',
                'metrics')


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str
  overrides: dict[str, Any]
  paper: dict[str, float]
  base: str | None = None
  mode: str = 'pretrain'


def cell(name: str, overrides: dict[str, Any] | None = None, *, paper=None, base=None,
         mode=None) -> str:
  """One cell of ``config.study.cells`` as its JSON string."""
  spec = {'name': name, 'overrides': dict(overrides or {})}
  if paper:
    spec['paper'] = dict(paper)
  if base is not None:
    spec['base'] = base
  if mode is not None:
    spec['mode'] = mode
  return json.dumps(spec, sort_keys=False)


def comparison(cell_name: str, reference: str, *, metric: str = 'linear/top1',
               reference_metric: str | None = None, expect: str | None = None,
               family: str | None = None, claim: str = '', paper: str = '',
               name: str | None = None) -> str:
  """One comparison of ``config.study.comparisons`` as its JSON string: ``metric`` of
  ``cell_name`` minus ``reference_metric`` (default: the same metric) of ``reference``, seed by
  seed (``glf_jax.study.stats``; one cell with two metrics compares them within each run).
  ``expect``: the sign the paper expects (``'+'``: the cell higher, ``'-'``, or None);
  ``family``: comparisons that test one claim together (Holm-adjusted); ``claim`` and ``paper``:
  what the paper says and its numbers, for the tables."""
  return json.dumps({'name': name or f'{cell_name} - {reference}', 'cell': cell_name,
                     'reference': reference, 'metric': metric,
                     'reference_metric': reference_metric or metric, 'expect': expect,
                     'family': family, 'claim': claim, 'paper': paper})


def parse_comparisons(study) -> list[dict]:
  """The study's comparisons, checked against its cells and metrics."""
  names = {c.name for c in parse_cells(study)}
  out, seen = [], set()
  for i, text in enumerate(study.get('comparisons', ())):
    where = f'study.comparisons[{i}]'
    spec = _json_object(text, where, _COMPARISON_KEYS)
    for key in ('cell', 'reference'):
      if spec.get(key) not in names:
        raise ValueError(f'{where}.{key} must name a cell, got {spec.get(key)!r}')
    spec.setdefault('reference_metric', spec.get('metric'))
    for key in ('metric', 'reference_metric'):
      if spec.get(key) not in study.metrics:
        raise ValueError(f'{where}.{key} {spec.get(key)!r} must be one of study.metrics '
                         f'{list(study.metrics)}')
    if spec.get('expect') not in (None, '+', '-'):
      raise ValueError(f"{where}.expect must be '+', '-' or None, got {spec.get('expect')!r}")
    if spec['name'] in seen:
      raise ValueError(f'{where}.name {spec["name"]!r} is used twice')
    seen.add(spec['name'])
    out.append(spec)
  return out


def fit(cell_name: str, metric: str, *, after_step: int = 0) -> str:
  """One growth fit of ``config.study.fits`` as its JSON string: a cohort cell's tracked
  ``metric`` (e.g. ``pair/cl-nscl/weight_gap_sum``) against the step, per seed, over the tracked
  steps after ``after_step``: ``log(metric) = a + b·step`` (exponential growth) beside the
  straight line ``metric = a + b·step``, with each fit's R²."""
  return json.dumps({'cell': cell_name, 'metric': metric, 'after_step': after_step})


def parse_fits(study) -> list[dict]:
  names = {c.name: c for c in parse_cells(study)}
  out = []
  for i, text in enumerate(study.get('fits', ())):
    where = f'study.fits[{i}]'
    spec = _json_object(text, where, _FIT_KEYS)
    if spec.get('cell') not in names or names[spec['cell']].mode != 'cohort':
      raise ValueError(f'{where}.cell must name a cohort cell, got {spec.get("cell")!r}')
    if not isinstance(spec.get('metric'), str):
      raise ValueError(f'{where}.metric must be a tracked metric, got {spec.get("metric")!r}')
    out.append({'after_step': 0, **spec})
  return out


def figure(kind: str, metric: str, **settings) -> str:
  """One figure of ``config.study.figures`` as its JSON string.

  ``line``: ``metric`` against the numeric key ``x`` (mean ± std over seeds), one line per value
  of ``series`` (a key; optional), ``log_x``; ``heatmap``: mean ``metric`` over keys ``x`` and
  ``y``; ``bar``: mean ± std per cell, the paper's value as a marker; ``scatter``: ``metric``
  against the metric ``x``, one point per finished (cell, seed), one colour per cell, Pearson's
  r in the title (and in ``results.md``), per value of ``series`` if given; ``track``: a cohort
  cell's tracked ``metric`` (or each of ``metrics``) against the training step, mean ± std over
  seeds, one line per cell. ``cells``: the cells drawn (default: line/heatmap, those whose
  overrides set ``x``; the others, all). ``file``: the PNG's name.
  """
  return json.dumps({'kind': kind, 'metric': metric, **settings})


def default_study_config(name: str) -> ml_collections.ConfigDict:
  """``config.study`` with its defaults; the study file sets cells, seeds, metrics, figures."""
  return ml_collections.ConfigDict(dict(
      name=name,
      cells=(),
      seeds=(0,),
      metrics=('linear/top1', 'knn/k20'),
      figures=(),
      shard=config_dict.placeholder(str),
      only_cells=config_dict.placeholder(str),
      aggregate_only=False,
      compare_to=config_dict.placeholder(str),
      comparisons=(),
      fits=(),
      cells_dir=config_dict.placeholder(str),
  ))


def as_study(config: ml_collections.ConfigDict, name: str, *, cells, seeds, metrics, figures,
             compare_to: str | None = None, comparisons=(),
             fits=()) -> ml_collections.ConfigDict:
  """``config`` (a run config, modified and returned) as the study ``name``: ``mode='study'``
  and ``config.study`` with these fields over :func:`default_study_config`'s."""
  study = default_study_config(name)
  study.cells, study.seeds = tuple(cells), tuple(seeds)
  study.metrics, study.figures = tuple(metrics), tuple(figures)
  study.compare_to = compare_to
  study.comparisons = tuple(comparisons)
  study.fits = tuple(fits)
  with config.unlocked():
    config.study = study
    config.mode = 'study'
  return config


def _json_object(text, where: str, allowed: tuple[str, ...]) -> dict:
  """``text`` (a JSON object string, or a dict) as a dict whose keys are all ``allowed``."""
  if isinstance(text, dict):
    value = dict(text)
  else:
    try:
      value = json.loads(text)
    except (TypeError, ValueError) as e:
      raise ValueError(f'{where} must be a JSON object string, got {text!r} ({e})') from None
  if not isinstance(value, dict):
    raise ValueError(f'{where} must be a JSON object, got {value!r}')
  unknown = sorted(set(value) - set(allowed))
  if unknown:
    raise ValueError(f'{where}: unknown key(s) {unknown}; allowed: {list(allowed)}')
  return value


def parse_cells(study) -> list[Cell]:
  """The study's cells (all of them, before ``only_cells``), checked."""
  if not study.cells:
    raise ValueError('study.cells is empty: a study needs at least one cell')
  cells, seen = [], set()
  for i, text in enumerate(study.cells):
    where = f'study.cells[{i}]'
    spec = _json_object(text, where, _CELL_KEYS)
    name = spec.get('name')
    if not isinstance(name, str) or not _NAME.match(name):
      raise ValueError(f'{where}.name must be a file-name-safe string ([A-Za-z0-9_.=+-]), got '
                       f'{name!r}')
    if name in seen:
      raise ValueError(f'{where}.name {name!r} is used by two cells')
    seen.add(name)
    overrides = spec.get('overrides', {})
    if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
      raise ValueError(f'{where}.overrides must map dotted keys to values, got {overrides!r}')
    paper = spec.get('paper') or {}
    if not isinstance(paper, dict) or not all(isinstance(v, (int, float)) for v in paper.values()):
      raise ValueError(f'{where}.paper must map metrics to numbers, got {paper!r}')
    mode = spec.get('mode') or 'pretrain'
    if mode not in CELL_MODES:
      raise ValueError(f'{where}.mode must be one of {list(CELL_MODES)}, got {mode!r}')
    base = spec.get('base')
    if base is not None and not isinstance(base, str):
      raise ValueError(f'{where}.base must be a config file spec string, got {base!r}')
    cells.append(Cell(name, overrides, {k: float(v) for k, v in paper.items()}, base, mode))
  return cells


def parse_figures(study) -> list[dict]:
  figures = []
  for i, text in enumerate(study.figures):
    where = f'study.figures[{i}]'
    spec = _json_object(text, where, _FIGURE_KEYS)
    if spec.get('kind') not in FIGURE_KINDS:
      raise ValueError(f'{where}.kind must be one of {list(FIGURE_KINDS)}, got '
                       f'{spec.get("kind")!r}')
    if not isinstance(spec.get('metric'), str):
      raise ValueError(f'{where}.metric must be a metric name, got {spec.get("metric")!r}')
    needed = {'line': ('x',), 'heatmap': ('x', 'y'), 'bar': (), 'scatter': ('x',),
              'track': ()}[spec['kind']]
    for key in needed:
      if not isinstance(spec.get(key), str):
        what = 'a metric name' if spec['kind'] == 'scatter' else 'a dotted config key'
        raise ValueError(f'{where}.{key} must be {what} for a {spec["kind"]} figure, got '
                         f'{spec.get(key)!r}')
    if spec['kind'] != 'track' and spec['metric'] not in study.metrics:
      raise ValueError(f'{where}.metric {spec["metric"]!r} must be one of study.metrics '
                       f'{list(study.metrics)}')
    if spec['kind'] == 'scatter' and spec['x'] not in study.metrics:
      raise ValueError(f'{where}.x {spec["x"]!r} must be one of study.metrics '
                       f'{list(study.metrics)}')
    if 'metrics' in spec and (spec['kind'] != 'track' or not isinstance(spec['metrics'], list)
                              or not all(isinstance(m, str) for m in spec['metrics'])):
      raise ValueError(f'{where}.metrics (several tracked metrics) is a list of names, for a '
                       f'track figure only, got {spec["metrics"]!r}')
    figures.append(spec)
  return figures


def parse_shard(shard: str | None) -> tuple[int, int]:
  """``'i/n'`` -> ``(i, n)``; None -> ``(0, 1)``."""
  if shard is None:
    return 0, 1
  match = re.fullmatch(r'\s*(\d+)\s*/\s*(\d+)\s*', str(shard))
  if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
    raise ValueError(f"study.shard must be 'i/n' with 0 <= i < n (e.g. '0/4'), got {shard!r}")
  return int(match.group(1)), int(match.group(2))


def selected_cells(study) -> list[Cell]:
  """The cells ``only_cells`` keeps (all when unset), in the study's order."""
  cells = parse_cells(study)
  if study.get('only_cells') is None:
    return cells
  wanted = [w.strip() for w in study.only_cells.split(',') if w.strip()]
  unknown = sorted(set(wanted) - {c.name for c in cells})
  if unknown or not wanted:
    raise ValueError(f'study.only_cells names unknown cell(s) {unknown or wanted}; cells: '
                     f'{[c.name for c in cells]}')
  return [c for c in cells if c.name in wanted]


def check_seeds(study) -> list[int]:
  seeds = list(study.seeds)
  if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
    raise ValueError(f'study.seeds must be a non-empty tuple of ints >= 0, got {study.seeds!r}')
  if len(set(seeds)) != len(seeds):
    raise ValueError(f'study.seeds has repeated seeds: {study.seeds!r}')
  return seeds


def check_compare_to(study) -> str | None:
  """``study.compare_to``: None or the name of one of the study's cells."""
  name = study.get('compare_to')
  if name is not None:
    names = [c.name for c in parse_cells(study)]
    if name not in names:
      raise ValueError(f'study.compare_to must name a cell, got {name!r}; cells: {names}')
  return name


def plan(study) -> list[tuple[Cell, int]]:
  """Every (cell, seed) of the study, seed by seed (all cells of the first seed first)."""
  cells = selected_cells(study)
  return [(c, seed) for seed in check_seeds(study) for c in cells]


def shard_of(runs: list, shard: str | None) -> list:
  """Every n-th run, starting at the i-th, for ``shard='i/n'``."""
  i, n = parse_shard(shard)
  return runs[i::n]


def cell_dir(workdir: str, cell_name: str, seed: int) -> str:
  return os.path.join(workdir, CELLS_DIR, cell_name, f'seed{seed}')


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any],
                    where: str) -> None:
  """Sets each dotted key; only keys under ``objective.`` (term settings) and
  ``cohort.members.`` (a member added to a cohort cell) may be new."""
  for key, value in overrides.items():
    parts = key.split('.')
    may_add = ((parts[0] == 'objective' and len(parts) >= 2)
               or (parts[:2] == ['cohort', 'members'] and len(parts) >= 4))
    node = config
    for depth, part in enumerate(parts[:-1]):
      if part not in node:
        if not may_add:
          raise ValueError(f'{where}: override {key!r}: the config has no '
                           f'{".".join(parts[:depth + 1])!r}')
        with node.unlocked():
          node[part] = ml_collections.ConfigDict()
      node = node[part]
      if not isinstance(node, ml_collections.ConfigDict):
        raise ValueError(f'{where}: override {key!r}: {".".join(parts[:depth + 1])!r} is a value, '
                         'not a sub-tree')
    leaf = parts[-1]
    if leaf not in node and not may_add:
      raise ValueError(f'{where}: override {key!r}: the config has no such key')
    try:
      with node.unlocked():
        node[leaf] = tuple(value) if isinstance(value, list) else value
    except (TypeError, ValueError) as e:
      raise ValueError(f'{where}: override {key}={value!r}: {e}') from None


def _placed(value, seed: int, study_workdir: str | None):
  """A string override with ``{seed}`` and ``{study}`` (the study's workdir) filled in: a cell
  can name another cell's run of the same seed (``'{study}/cells/baseline/seed{seed}'``)."""
  if not isinstance(value, str):
    return value
  value = value.replace('{seed}', str(seed))
  return value if study_workdir is None else value.replace('{study}', study_workdir)


def build_cell_config(config: ml_collections.ConfigDict, cell_spec: Cell, seed: int,
                      study_workdir: str | None = None) -> ml_collections.ConfigDict:
  """The run config of ``cell_spec`` with ``seed`` (see the module docstring); string overrides
  get ``{seed}`` and, given ``study_workdir``, ``{study}`` filled in."""
  if cell_spec.base is not None:
    run_config = config_lib.load_config_file(cell_spec.base)
  else:
    run_config = copy.deepcopy(config)
    with run_config.unlocked():
      del run_config['study']
      if cell_spec.mode != 'cohort' and 'cohort' in run_config:
        del run_config['cohort']
  overrides = {k: _placed(v, seed, study_workdir) for k, v in cell_spec.overrides.items()}
  apply_overrides(run_config, overrides, f'study cell {cell_spec.name!r}')
  with run_config.unlocked():
    run_config.seed = seed
    run_config.mode = cell_spec.mode
  run_config.lock()
  return run_config


def is_finished(summary: dict, mode: str = 'pretrain') -> bool:
  """A cell that needs no more work: finished, and (pretraining) evaluated."""
  if summary.get('status') != 'finished':
    return False
  return mode != 'pretrain' or 'pretrained' in summary


def read_commands(workdir: str) -> list[str]:
  """The commands that ran the study's cells (``commands.txt``), first first."""
  path = fileio.join(workdir, COMMANDS)
  if not fileio.exists(path):
    return []
  return [line.strip() for line in fileio.read_text(path).splitlines() if line.strip()]


def flattened(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return saved_config.flatten(json.loads(saved_config.to_json(config)))


def override_keys(cells: Iterable[Cell]) -> list[str]:
  """Every key any cell overrides, in first-use order."""
  keys = []
  for c in cells:
    keys += [k for k in c.overrides if k not in keys]
  return keys


def command_line() -> str:
  """This process's command, when it is ``glf_jax.main``'s; else a note that it ran in process."""
  argv0 = os.path.basename(sys.argv[0]) if sys.argv else ''
  if argv0 == 'main.py' and 'glf_jax' in sys.argv[0]:
    return ' '.join(['python -m glf_jax.main'] + [shlex.quote(a) for a in sys.argv[1:]])
  return f'glf_jax.main.run(config, workdir) in process ({argv0 or "python"})'
