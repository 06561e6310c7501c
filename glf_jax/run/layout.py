"""The files of a run's workdir, by name: the one place they are spelled.

::

    WORKDIR/
      .lock                  one run at a time (glf_jax.run.lock)
      config.json            the config the run started with; config_changes.jsonl: allowed changes
      config.json.edited-<time>   a hand-edited config.json, kept when the original is restored
      checkpoints/           orbax checkpoints (glf_jax.run.checkpoint)
      metrics.jsonl          training scalars (step 1, every train.log_every steps), evaluations
      tracks.jsonl           a cohort's tracked alignment (glf_jax.cohort)
      tensorboard/           the same scalars as TensorBoard events
      summary.json           the merged record of training and evaluations (glf_jax.run.records)
      summary.json.corrupt-<time>   an unreadable summary.json, kept aside when one is rewritten
      evaluations.jsonl      one line per evaluation invocation
      features/              cached evaluation features (glf_jax.evaluate)
      curves.png, embedding.png, embedding.npz, tracks.png   pictures (glf_jax.plots)
      encoder_torchvision.safetensors / .json                the export mode's output
      compile_report.json    the compile mode's report (glf_jax.modes.compile), with
      compile_train_step.hlo.txt / compile_eval_forward.hlo.txt   the programs it compiled
"""

from __future__ import annotations

from glf_jax.runtime import fileio

LOCK = '.lock'
CONFIG = 'config.json'
CONFIG_CHANGES = 'config_changes.jsonl'
CHECKPOINTS = 'checkpoints'
METRICS_LOG = 'metrics.jsonl'
TRACKS_LOG = 'tracks.jsonl'
TENSORBOARD = 'tensorboard'
SUMMARY = 'summary.json'
EVALUATIONS_LOG = 'evaluations.jsonl'
FEATURES = 'features'
CURVES = 'curves.png'
EMBEDDING = 'embedding.png'
EMBEDDING_DATA = 'embedding.npz'
TRACKS_PLOT = 'tracks.png'
EXPORT = 'encoder_torchvision'
COMPILE_REPORT = 'compile_report.json'
COMPILE_HLO = 'compile_{}.hlo.txt'


def path(workdir: str, name: str) -> str:
  """``workdir/name`` (a URL workdir's too: ``gs://b/r/name``)."""
  return fileio.join(workdir, name)
