"""The config a run saves (``config.json`` and every checkpoint's meta), and how a later
invocation's config is compared with it.

A resumed run (or a finished study cell run again) must train what it started with:
:func:`config_differences` names the keys that differ, except those in
:data:`IGNORED_ON_RESUME` (what a run evaluates and how it executes, never what it trains).
``config.json`` keeps the config the run started with; an allowed change
(``allow_config_change``) is appended to ``config_changes.jsonl`` instead.
"""

from __future__ import annotations

import json
import os
import time

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
                 saved_json: str | None) -> None:
  """``config.json`` is the config the run started with; a changed config on resume is logged
  to ``config_changes.jsonl`` (step, and each changed key's old and new value). Process 0 only."""
  if jax.process_index() != 0:
    return
  path = layout.path(workdir, layout.CONFIG)
  if saved_json is None or not os.path.exists(path):
    with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
      f.write(to_json(config))
    return
  old = flatten(json.loads(saved_json))
  new = flatten(json.loads(to_json(config)))
  changes = {k: [old.get(k), new.get(k)] for k in config_differences(saved_json, config)}
  if changes:
    with open(layout.path(workdir, layout.CONFIG_CHANGES), 'a', encoding='utf-8') as f:
      f.write(json.dumps({'step': step, 'wall_time': time.time(), 'changes': changes},
                         default=str) + '\n')
