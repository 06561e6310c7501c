"""What one run does, by ``config.mode``: the per-run function the entry point and every study
cell call.

* ``pretrain`` (``modes.pretrain``): pretraining, then the evaluators on the pretrained encoder
  (and its random initialisation, side by side), then the pictures;
* ``eval``, ``linear_probe``, ``knn``, ``finetune`` (``modes.evaluation``): the evaluators on a
  saved encoder — a run's, or a torchvision weights file's;
* ``export`` (``modes.export``): a run's backbone as a torchvision state dict;
* ``plot``: a run's pictures redrawn from its files;
* ``cohort`` (``glf_jax.cohort``): members trained in lockstep, their alignment tracked;
* ``compile`` (``modes.compile``): the train step and evaluation forward compiled for a TPU slice
  or GPU box this host does not have, and what they need per device (``compile_report.json``).

Every mode prints a table and records its results in the workdir (process 0) without overwriting
earlier ones (``glf_jax.run.records``: ``summary.json``, ``evaluations.jsonl``, the evaluation
metrics in ``metrics.jsonl`` and TensorBoard). A run holds its workdir's lock
(``glf_jax.run.lock``): a second run on the same workdir is refused with the holder's pid and
command. (``study`` is the entry point's: ``glf_jax.study`` runs cells of these modes.)

Imports: config (validation), cohort, train, prior, evaluate, plots, run, runtime.
"""

from __future__ import annotations

import jax
import ml_collections

from glf_jax import cohort
from glf_jax import config as config_lib
from glf_jax.modes import compile as compile_mode
from glf_jax.modes import evaluation
from glf_jax.modes import export
from glf_jax.modes import pretrain
from glf_jax.run import lock
from glf_jax.run import records


def _export(config, workdir):
  summary = export.export_run(config, workdir)
  return records.record_evaluation(
      workdir, records.evaluation_key('export', '-', summary.get('checkpoint_dir', workdir),
                                      summary.get('step')), summary)


def _plot(config, workdir):
  del config
  from glf_jax.plots import run as plots  # pylint: disable=g-import-not-at-top  (matplotlib)
  written = plots.redraw(workdir) if jax.process_index() == 0 else []
  for path in written:
    print(f'wrote {path}', flush=True)
  return {'mode': 'plot', 'written': written}


# config.mode -> what runs it, (config, workdir) -> summary.
MODES = {
    'pretrain': pretrain.run_pretrain,
    'eval': evaluation.evaluate_saved,
    'linear_probe': evaluation.evaluate_saved,
    'knn': evaluation.evaluate_saved,
    'finetune': evaluation.evaluate_saved,
    'export': _export,
    'plot': _plot,
    'cohort': cohort.run_cohort,
    'compile': compile_mode.run_compile,
}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs ``config.mode`` (see the module docstring) holding the workdir's lock; returns the
  summary. A workdir this call created is removed again if the run fails before writing into
  it."""
  config_lib.validate(config)
  if config.mode not in MODES:
    raise ValueError(f'config.mode {config.mode!r} is not a run mode; run modes: {list(MODES)}'
                     ' (a study runs through glf_jax.main)')
  with lock.claim(workdir, chief=jax.process_index() == 0) as workdir:
    return MODES[config.mode](config, workdir)
