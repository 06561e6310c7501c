"""A study: one base run config, cells of overrides, seeds; every (cell, seed) a normal run.

``config.mode = 'study'`` (``glf_jax.runner`` dispatches here). A study config is a complete run
config plus ``config.study``::

    name            the study's name (titles, file headers)
    cells           tuple of JSON strings, one per cell (``cell(...)`` writes them):
                    {"name": str, "overrides": {dotted key: value}, "paper": {metric: value},
                     "base": "configs/<file>.py[:arg]" (optional), "mode": "cohort" (optional)}
    seeds           tuple of ints: every cell runs once per seed (``config.seed``)
    metrics         what the tables report, e.g. ('linear/top1', 'knn/k20')
    figures         tuple of JSON strings (``figure(...)``): line / heatmap / bar plots
    shard           'i/n' (0 <= i < n): run only every n-th (seed, cell); None: all
    only_cells      comma-separated cell names to run and report; None: all
    aggregate_only  True: write the tables and figures from the cells' summaries, train nothing
    compare_to      a cell name: results.md adds each cell's paired differences from it, seed
                    by seed (one seed: the same initial parameters and batch order in every
                    cell), mean ± std over the seeds both finished; None: no such table

Cells are JSON strings so that a study round-trips through ``config.json`` and its scalar fields
(seeds, shard, the base config's keys) stay settable on the command line
(``--config.study.shard=1/4``, ``--config.train.epochs=50``).

A cell's run config is the study config without ``study`` (or, with ``base``, that config file's
``get_config``), then the cell's overrides, ``seed`` and ``mode`` (``pretrain``, or ``cohort``: then
the study config's ``cohort`` sub-tree says the members, and a cell's overrides may set
``cohort.members.<name>.<key>``). Override keys must exist, except under
``objective.`` where a term's settings may be added (``objective.simclr.temperature`` on a
balanced base): ``build_objective`` refuses unknown ones; and under ``cohort.members.``, where a
cell may add a member (``cohort.members.ce.objective.name='ce'``). It runs in
``<workdir>/cells/<cell>/seed<k>/`` through ``glf_jax.runner.run``, so resume, SIGTERM and
evaluation work per cell. Runs go seed by seed (every cell of seed 0 first), so a study stopped
half way has whole comparisons. A cell whose ``summary.json`` says finished (with an evaluation)
is skipped; an interrupted one resumes; an interrupted cell stops the study.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import sys
from typing import Any, Iterable

import jax
import ml_collections
from ml_collections import config_dict

from glf_jax import config as config_lib
from glf_jax import fileio
from glf_jax import methods
from glf_jax import run_records

CELLS_DIR = 'cells'
STUDY_CONFIG = 'study_config.json'
COMMANDS = 'commands.txt'
CELL_MODES = ('pretrain', 'cohort')
FIGURE_KINDS = ('line', 'heatmap', 'bar', 'scatter', 'track')
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.=+-]*$')
_CELL_KEYS = ('name', 'overrides', 'paper', 'base', 'mode')
_FIGURE_KEYS = ('kind', 'metric', 'x', 'y', 'cells', 'series', 'log_x', 'file', 'title',
                'metrics')
# Keys that may change between invocations of a study without changing a finished cell: the
# run-level ones glf_jax.config ignores on resume.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
  ))


def as_study(config: ml_collections.ConfigDict, name: str, *, cells, seeds, metrics, figures,
             compare_to: str | None = None) -> ml_collections.ConfigDict:
  """``config`` (a run config, modified and returned) as the study ``name``: ``mode='study'``
  and ``config.study`` with these fields over :func:`default_study_config`'s."""
  study = default_study_config(name)
  study.cells, study.seeds = tuple(cells), tuple(seeds)
  study.metrics, study.figures = tuple(metrics), tuple(figures)
  study.compare_to = compare_to
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


def load_config_module(path: str):
  """The config file ``path`` as a module (its helpers, e.g. ``configs/quickstart.py``'s
  ``digits_run``); a relative path is tried from the working directory, then from the
  repository root."""
  if not os.path.isabs(path) and not os.path.exists(path):
    path = os.path.join(_REPO_ROOT, path)
  if not os.path.isfile(path):
    raise ValueError(f'no config file {path}')
  module_spec = importlib.util.spec_from_file_location(
      f'_glf_config_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of ``path[:arg]`` (path as :func:`load_config_module`)."""
  path, _, arg = spec.partition(':')
  try:
    module = load_config_module(path)
  except ValueError as e:
    raise ValueError(f'config {spec!r}: {e}') from None
  return module.get_config(arg) if arg else module.get_config()


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


def build_cell_config(config: ml_collections.ConfigDict, cell_spec: Cell,
                      seed: int) -> ml_collections.ConfigDict:
  """The run config of ``cell_spec`` with ``seed`` (see the module docstring)."""
  if cell_spec.base is not None:
    run_config = load_config_file(cell_spec.base)
  else:
    run_config = copy.deepcopy(config)
    with run_config.unlocked():
      del run_config['study']
      if cell_spec.mode != 'cohort' and 'cohort' in run_config:
        del run_config['cohort']
  apply_overrides(run_config, cell_spec.overrides, f'study cell {cell_spec.name!r}')
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


def command_line() -> str:
  """This process's command, when it is ``glf_jax.main``'s; else a note that it ran in process."""
  argv0 = os.path.basename(sys.argv[0]) if sys.argv else ''
  if argv0 == 'main.py' and 'glf_jax' in sys.argv[0]:
    return ' '.join(['python -m glf_jax.main'] + [shlex.quote(a) for a in sys.argv[1:]])
  return f'glf_jax.main.run(config, workdir) in process ({argv0 or "python"})'


def _check_finished_config(run_config, directory: str, where: str) -> None:
  """Refuses a finished cell that was run with other settings than the study now gives it."""
  path = os.path.join(directory, 'config.json')
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    saved = f.read()
  differing = config_lib.config_differences(saved, run_config)
  if differing and not run_config.get('allow_config_change', False):
    raise ValueError(f'{where} in {directory} finished with other settings ({", ".join(differing)})'
                     '; delete that directory to rerun it, or use another --workdir')


def _write_study_config(config, workdir: str) -> None:
  """``study_config.json``, and this command appended to ``commands.txt`` (what trained the
  cells, for ``results.md``; an aggregate-only run adds nothing)."""
  if jax.process_index() == 0:
    with fileio.atomic_write(os.path.join(workdir, STUDY_CONFIG), 'w', encoding='utf-8') as f:
      f.write(config_lib.to_json(config))
    commands = read_commands(workdir)
    if command_line() not in commands:
      with open(os.path.join(workdir, COMMANDS), 'a', encoding='utf-8') as f:
        f.write(command_line() + '\n')


def read_commands(workdir: str) -> list[str]:
  """The commands that ran the study's cells (``commands.txt``), first first."""
  path = os.path.join(workdir, COMMANDS)
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [line.strip() for line in f if line.strip()]


def run_study(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs this shard's (cell, seed) runs that are not finished, then aggregates; returns the
  study's summary (``status`` 'interrupted' with the cell's ``stop_signal`` if a cell was)."""
  from glf_jax import runner  # pylint: disable=g-import-not-at-top  (runner imports us lazily)
  from glf_jax.study import aggregate as aggregate_lib  # pylint: disable=g-import-not-at-top
  study = config.study
  runs = plan(study)
  parse_figures(study)
  mine = shard_of(runs, study.shard)
  # Every run's config is built and checked before the first trains: a bad override in the last
  # cell is an error now, not hours from now.
  configs = {}
  for cell_spec, seed in runs:
    run_config = build_cell_config(config, cell_spec, seed)
    config_lib.validate(run_config)
    if cell_spec.mode == 'pretrain':
      methods.build_objective(run_config.objective)  # unknown term keys, out-of-range values
    else:
      from glf_jax.study import cohort  # pylint: disable=g-import-not-at-top  (cycle)
      cohort.check_cohort_config(run_config)
      for name in cohort.member_names(run_config):  # (the classes are the data's at training)
        member = cohort.member_config(run_config, name, num_classes=2)
        methods.build_objective(member.objective)
    configs[cell_spec.name, seed] = run_config
  check_compare_to(study)
  ran, skipped = [], []
  if not study.aggregate_only:
    _write_study_config(config, workdir)
    shard_text = f' (shard {study.shard})' if study.shard is not None else ''
    print(f'study {study.name}: {len(mine)} of {len(runs)} runs{shard_text} in {workdir}',
          flush=True)
    for k, (cell_spec, seed) in enumerate(mine):
      directory = cell_dir(workdir, cell_spec.name, seed)
      where = f'study cell {cell_spec.name!r} seed {seed}'
      if is_finished(run_records.read_summary(directory), cell_spec.mode):
        _check_finished_config(configs[cell_spec.name, seed], directory, where)
        print(f'[{k + 1}/{len(mine)}] {cell_spec.name} seed {seed}: finished, skipped', flush=True)
        skipped.append((cell_spec.name, seed))
        continue
      print(f'[{k + 1}/{len(mine)}] {cell_spec.name} seed {seed} -> {directory}', flush=True)
      summary = runner.run(configs[cell_spec.name, seed], directory)
      ran.append((cell_spec.name, seed))
      if summary.get('status') == 'interrupted':
        print(f'study {study.name} stopped: {where} was interrupted ({summary.get("stop_signal")})'
              '; run the same command to resume it and the rest', flush=True)
        return {'mode': 'study', 'status': 'interrupted', 'stop_signal': summary.get('stop_signal'),
                'interrupted_cell': [cell_spec.name, seed], 'ran': ran, 'skipped': skipped}
  result = aggregate_lib.aggregate(config, workdir) if jax.process_index() == 0 else {}
  return {'mode': 'study', 'status': 'finished', 'ran': ran, 'skipped': skipped, **result}


def flattened(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return config_lib.flatten(json.loads(config_lib.to_json(config)))


def override_keys(cells: Iterable[Cell]) -> list[str]:
  """Every key any cell overrides, in first-use order."""
  keys = []
  for c in cells:
    keys += [k for k in c.overrides if k not in keys]
  return keys
