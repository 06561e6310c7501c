"""The config a run saves (``config.json`` and every checkpoint's meta), and how a later
invocation's config is compared with it.

A resumed run (or a finished study cell run again) must train what it started with:
:func:`config_differences` names the keys that differ, except those in
:data:`IGNORED_ON_RESUME` (what a run evaluates and how it executes, never what it trains).
``config.json`` keeps the config the run started with; an allowed change
(``allow_config_change``) is appended to ``config_changes.jsonl`` instead. Every checkpoint's meta
holds that starting config too (``started_config``), so a resumed run finds a hand-edited
``config.json`` (edits change nothing: a run's config is its command line's, checked against the
checkpoint's), keeps the edited file as ``config.json.edited-<time>`` and restores the original,
with a warning.
"""

from __future__ import annotations

import json
import time

from absl import logging
import jax
import ml_collections

from glf_jax.run import layout
from glf_jax.runtime import fileio

# Keys a resumed run (or a finished study cell) may change: what it evaluates and how it executes
# (cohort.dispatch gives bit-identical members either way, data.decode_cache the same pixels),
# not what it trains.
IGNORED_ON_RESUME = ('allow_config_change', 'mode', 'eval', 'xla_cpu_flags', 'cohort.dispatch',
                     'compile', 'data.decode_cache', 'compilation_cache_dir')


def to_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(sort_keys=True)


def flatten(tree, prefix: str = '') -> dict:
  """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def config_differences(saved_json: str, config: ml_collections.ConfigDict,
                       ignore=IGNORED_ON_RESUME) -> list[str]:
  """Keys whose values differ between a saved run's config and ``config`` (dotted names)."""
  old = flatten(json.loads(saved_json))
  new = flatten(json.loads(to_json(config)))
  def ignored(key):
    return any(key == i or key.startswith(i + '.') for i in ignore)
  keys = sorted(k for k in set(old) | set(new) if not ignored(k))
  # A key absent on one side and None (not set) on the other is no difference: a key added to
  # the config since the run started, with its feature off, does not block a resume.
  return [k for k in keys if old.get(k) != new.get(k)]


def write_config(workdir: str, config: ml_collections.ConfigDict, *, step: int,
                 saved_json: str | None, started_json: str | None = None) -> None:
  """``config.json`` is the config the run started with; a changed config on resume is logged
  to ``config_changes.jsonl`` (step, and each changed key's old and new value). Process 0 only.

  Args:
    workdir: the run's directory.
    config: this invocation's config.
    step: the step the run starts or resumes from.
    saved_json: the checkpoint's config (None: a fresh run).
    started_json: the config the run started with, from the checkpoint (None: a fresh run, or a
      checkpoint from before it was saved: then ``config.json`` is trusted as it is). A
      ``config.json`` that differs from it is kept aside and restored (module docstring).
  """
  if jax.process_index() != 0:
    return
  path = layout.path(workdir, layout.CONFIG)
  if saved_json is None or (started_json is None and not fileio.exists(path)):
    _write(path, to_json(config))
    return
  if started_json is not None:
    _restore_if_edited(path, started_json)
  old = flatten(json.loads(saved_json))
  new = flatten(json.loads(to_json(config)))
  changes = {k: [old.get(k), new.get(k)] for k in config_differences(saved_json, config)}
  if changes:
    fileio.append_text(layout.path(workdir, layout.CONFIG_CHANGES),
                       json.dumps({'step': step, 'wall_time': time.time(), 'changes': changes},
                                  default=str) + '\n')


def _write(path: str, text: str) -> None:
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    f.write(text)


def started_config(workdir: str, meta: dict) -> str:
  """The config the run of a checkpoint's ``meta`` started with: ``meta['started_config']``; for
  checkpoints from before it was saved, ``config.json`` when it reads as JSON, else the
  checkpoint's config."""
  if meta.get('started_config'):
    return meta['started_config']
  try:
    text = fileio.read_text(layout.path(workdir, layout.CONFIG))
    json.loads(text)
    return text
  except (OSError, ValueError):
    return meta['config']


def restore_if_edited(workdir: str, started_json: str) -> None:
  """Rewrites ``config.json`` as ``started_json`` when it is missing or says otherwise, keeping
  the edited file as ``config.json.edited-<time>`` (process 0 only)."""
  if jax.process_index() == 0:
    _restore_if_edited(layout.path(workdir, layout.CONFIG), started_json)


def _restore_if_edited(path: str, started_json: str) -> None:
  if not fileio.exists(path):
    _write(path, started_json)
    logging.warning('%s was missing; restored the config the run started with', path)
    return
  try:
    edited = json.loads(fileio.read_text(path)) != json.loads(started_json)
  except (OSError, ValueError):
    edited = True
  if not edited:
    return
  target = fileio.keep_aside(path, 'edited')
  _write(path, started_json)
  logging.warning('%s differs from the config this run started with (the checkpoint\'s): kept it '
                  'as %s and restored the original; editing config.json changes nothing, a run\'s '
                  'settings are its command line\'s (--config.<key>=<value>)', path, target)
