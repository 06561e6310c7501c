"""A study: one base run config, cells of overrides, seeds; every (cell, seed) a normal run.

``config.mode = 'study'`` (``glf_jax.main`` dispatches here). A study config is a complete run
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
    comparisons     tuple of JSON strings (``comparison(...)``): the claims a study tests, each
                    a cell against a reference on one metric, with the sign the paper expects;
                    results.md gives each its paired statistics and verdict
                    (``glf_jax.study.stats``)
    cells_dir       folders (comma-separated) of the cells' records (``glf_jax.study.cells``):
                    records of finished cells are written to the first, a (cell, seed) recorded
                    in any is done, and the tables can be made from records alone; None: none

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
``<workdir>/cells/<cell>/seed<k>/`` through ``glf_jax.modes.run``, so resume, SIGTERM and
evaluation work per cell. Runs go seed by seed (every cell of seed 0 first), so a study stopped
half way has whole comparisons. A cell whose ``summary.json`` says finished (with an evaluation)
is skipped; an interrupted one resumes; an interrupted cell stops the study.
"""

from __future__ import annotations


import jax
import ml_collections

from glf_jax import cohort
from glf_jax import config as config_lib
from glf_jax import methods
from glf_jax import modes
from glf_jax.run import checkpoint
from glf_jax.run import layout
from glf_jax.run import lock
from glf_jax.run import records
from glf_jax.run import saved_config
from glf_jax.runtime import fileio
from glf_jax.study import aggregate as aggregate_lib
from glf_jax.study import cells as cells_lib
from glf_jax.study.spec import (CELL_MODES, CELLS_DIR, COMMANDS, FIGURE_KINDS, STUDY_CONFIG, Cell,
                                apply_overrides, as_study, build_cell_config, cell, cell_dir,
                                comparison, fit,
                                check_compare_to, check_seeds, default_study_config, figure,
                                flattened, is_finished, override_keys, parse_cells,
                                parse_comparisons, parse_figures, parse_fits, parse_shard, plan,
                                read_commands, selected_cells, shard_of, command_line)


def _check_finished_config(run_config, directory: str, where: str) -> None:
  """Refuses a finished cell that was run with other settings than the study now gives it: the
  settings its checkpoint was saved with (``config.json``, which a hand can edit, only where the
  cell has no checkpoint)."""
  meta = checkpoint.read_meta(checkpoint.checkpoint_dir(directory))
  if meta is not None:
    saved = meta['config']
  else:
    path = layout.path(directory, layout.CONFIG)
    if not fileio.exists(path):
      return
    saved = fileio.read_text(path)
  differing = saved_config.config_differences(saved, run_config)
  if differing and not run_config.get('allow_config_change', False):
    raise ValueError(f'{where} in {directory} finished with other settings ({", ".join(differing)})'
                     '; delete that directory to rerun it, or use another --workdir')


def _write_study_config(config, workdir: str) -> None:
  """``study_config.json``, and this command appended to ``commands.txt`` (what trained the
  cells, for ``results.md``; an aggregate-only run adds nothing)."""
  if jax.process_index() == 0:
    with fileio.atomic_write(fileio.join(workdir, STUDY_CONFIG), 'w', encoding='utf-8') as f:
      f.write(saved_config.to_json(config))
    commands = read_commands(workdir)
    if command_line() not in commands:
      fileio.append_text(fileio.join(workdir, COMMANDS), command_line() + '\n')


def _check_runs(config, runs, workdir: str) -> dict:
  """Every run's config, built and checked before the first trains: a bad override in the last
  cell is an error now, not hours from now."""
  configs = {}
  for cell_spec, seed in runs:
    run_config = build_cell_config(config, cell_spec, seed, study_workdir=workdir)
    config_lib.validate(run_config)
    if cell_spec.mode == 'pretrain':
      methods.build_objective(run_config.objective)  # unknown term keys, out-of-range values
    else:
      cohort.check_cohort_config(run_config)
      for name in cohort.member_names(run_config):  # (the classes are the data's at training)
        member = cohort.member_config(run_config, name, num_classes=2)
        methods.build_objective(member.objective)
    configs[cell_spec.name, seed] = run_config
  check_compare_to(config.study)
  parse_comparisons(config.study)
  parse_fits(config.study)
  return configs


def run_study(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs this shard's (cell, seed) runs that are not finished, then aggregates; returns the
  study's summary (``status`` 'interrupted' with the cell's ``stop_signal`` if a cell was).

  A sharded study's processes (a SLURM array) share the study's workdir; each cell takes its own
  lock, so the study itself holds none then."""
  config_lib.validate(config)
  study = config.study
  shared = study.get('shard') is not None or study.get('aggregate_only')
  with lock.claim(workdir, chief=jax.process_index() == 0, lock=not shared) as workdir:
    runs = plan(study)
    parse_figures(study)
    configs = _check_runs(config, runs, workdir)
    ran, skipped = [], []
    if not study.aggregate_only:
      stopped = _run_cells(config, workdir, runs, configs, ran, skipped)
      if stopped is not None:
        return stopped
    result = aggregate_lib.aggregate(config, workdir) if jax.process_index() == 0 else {}
    return {'mode': 'study', 'status': 'finished', 'ran': ran, 'skipped': skipped, **result}


def _run_cells(config, workdir, runs, configs, ran, skipped) -> dict | None:
  """Runs this shard's unfinished cells in order; the study's summary if one was interrupted."""
  study = config.study
  mine = shard_of(runs, study.shard)
  _write_study_config(config, workdir)
  recorded = cells_lib.read_all(study.cells_dir)
  write_to = cells_lib.folders(study.cells_dir)[:1]
  shard_text = f' (shard {study.shard})' if study.shard is not None else ''
  print(f'study {study.name}: {len(mine)} of {len(runs)} runs{shard_text} in {workdir}',
        flush=True)
  for k, (cell_spec, seed) in enumerate(mine):
    directory = cell_dir(workdir, cell_spec.name, seed)
    where = f'study cell {cell_spec.name!r} seed {seed}'
    run_config = configs[cell_spec.name, seed]
    if (cell_spec.name, seed) in recorded:
      cells_lib.check_config(recorded[cell_spec.name, seed], run_config, where)
      print(f'[{k + 1}/{len(mine)}] {cell_spec.name} seed {seed}: recorded, skipped', flush=True)
      skipped.append((cell_spec.name, seed))
      continue
    summary = records.read_summary(directory)
    if is_finished(summary, cell_spec.mode):
      _check_finished_config(run_config, directory, where)
      print(f'[{k + 1}/{len(mine)}] {cell_spec.name} seed {seed}: finished, skipped', flush=True)
      skipped.append((cell_spec.name, seed))
    else:
      print(f'[{k + 1}/{len(mine)}] {cell_spec.name} seed {seed} -> {directory}', flush=True)
      summary = modes.run(run_config, directory)
      ran.append((cell_spec.name, seed))
    if write_to and is_finished(summary, cell_spec.mode) and jax.process_index() == 0:
      path = cells_lib.write(write_to[0], cells_lib.make_record(
          study.name, cell_spec, seed, run_config, summary, directory))
      print(f'  recorded in {path}', flush=True)
    if summary.get('status') == 'interrupted':
      print(f'study {study.name} stopped: {where} was interrupted ({summary.get("stop_signal")})'
            '; run the same command to resume it and the rest', flush=True)
      return {'mode': 'study', 'status': 'interrupted', 'stop_signal': summary.get('stop_signal'),
              'interrupted_cell': [cell_spec.name, seed], 'ran': ran, 'skipped': skipped}
  return None
