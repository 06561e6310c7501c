"""A cohort's config: ``config.cohort`` (see the package docstring) and each member's run config."""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping, Sequence

import ml_collections

from glf_jax import config as config_lib
from glf_jax import methods
from glf_jax.run.saved_config import flatten

WEIGHT_GAP_LAYERS = ('backbone', 'backbone_bn')
# How a cohort step runs: each member its own program ('split'), or all in one ('fused').
DISPATCH = ('split', 'fused')
MAX_PROBE_EXAMPLES = 10_000
# Encoder parts copied from member 0 into every member whose part has the same structure.
SHARED_PARTS = ('backbone', 'projector', 'predictor', 'prototypes', 'classifier')
# What a member may override: its objective and its numbers, never what the members share.
_ALLOWED_PREFIXES = ('objective.', 'optim.', 'method.', 'prior.')
_ALLOWED_KEYS = ('train.online_probe_lr', 'model.projector_layers', 'model.projector_hidden_dim',
                 'model.projection_dim', 'model.projector_last_bn', 'model.projector_last_bias',
                 'model.predictor_layers', 'model.predictor_hidden_dim', 'model.num_prototypes',
                 'model.num_classes')
_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')


def default_cohort_config() -> ml_collections.ConfigDict:
  """``config.cohort`` with no members (see the module docstring)."""
  return ml_collections.ConfigDict(dict(
      members=ml_collections.ConfigDict(),
      track_every=100,
      probe_examples=1000,
      probe_split=ml_collections.config_dict.placeholder(str),
      knn_examples=5000,
      knn_k=20,
      rsa_examples=2000,
      weight_gap_layers='backbone',
      dispatch='split',
  ))


def _nest(overrides: Mapping[str, Any]) -> dict:
  """``{'objective.simclr.temperature': 0.5}`` -> ``{'objective': {'simclr': {...: 0.5}}}``."""
  out: dict = {}
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = out
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def cohort_config(base: ml_collections.ConfigDict,
                  members: (Sequence[tuple[str, Mapping[str, Any]]]
                            | Mapping[str, Mapping[str, Any]]),
                  **settings) -> ml_collections.ConfigDict:
  """``base`` (a run config, modified and returned) as a cohort: ``mode='cohort'``,
  ``cohort.members`` from ``(name, {dotted key: value})`` pairs (kept in name order, see
  :func:`member_names`) and ``settings`` for the other ``config.cohort`` fields."""
  cohort = default_cohort_config()
  items = members.items() if isinstance(members, Mapping) else members
  for name, overrides in items:
    cohort.members[name] = ml_collections.ConfigDict(_nest(dict(overrides)))
  cohort.update(settings)
  with base.unlocked():
    base.mode = 'cohort'
    base.cohort = cohort
  return base


def member_names(config: ml_collections.ConfigDict) -> list[str]:
  """The members in name order (a ConfigDict's key order, also after a JSON round trip): member
  0, whose shared parts every member starts from, is the first name."""
  return sorted(config.cohort.members.keys())


def check_cohort_config(config: ml_collections.ConfigDict) -> None:
  """Refuses a cohort config that could not keep its members' randomness shared."""
  if 'cohort' not in config:
    raise ValueError('config.mode=cohort needs config.cohort (glf_jax.cohort.cohort_config)')
  c = config.cohort
  names = member_names(config)
  if len(names) < 1:
    raise ValueError('config.cohort.members is empty; give at least one member')
  for name in names:
    if not _NAME.match(name):
      raise ValueError(f'cohort member name {name!r} must match {_NAME.pattern}')
    for key in flatten(c.members[name].to_dict()):
      if not (key.startswith(_ALLOWED_PREFIXES) or key in _ALLOWED_KEYS):
        raise ValueError(
            f'cohort member {name!r} overrides {key!r}, which the members share; a member may '
            f'override only {[p + "*" for p in _ALLOWED_PREFIXES] + list(_ALLOWED_KEYS)}')
  for key in ('track_every', 'probe_examples', 'knn_examples', 'knn_k', 'rsa_examples'):
    value = c[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f'cohort.{key} must be an int >= 1, got {value!r}')
  if c.probe_examples > MAX_PROBE_EXAMPLES:
    raise ValueError(f'cohort.probe_examples must be <= {MAX_PROBE_EXAMPLES}, got '
                     f'{c.probe_examples}')
  if c.rsa_examples < 3:
    raise ValueError(f'cohort.rsa_examples must be >= 3, got {c.rsa_examples}')
  if c.get('dispatch') not in DISPATCH:
    raise ValueError(f'cohort.dispatch must be one of {DISPATCH}, got {c.get("dispatch")!r}')
  if (config.train.get('steps_per_call') or 1) != 1:
    raise ValueError(f'train.steps_per_call is {config.train.steps_per_call}: a cohort runs one '
                     'step per call (its tracking reads the state between steps); set it to 1')
  if c.weight_gap_layers not in WEIGHT_GAP_LAYERS:
    raise ValueError(f'cohort.weight_gap_layers must be one of {WEIGHT_GAP_LAYERS}, got '
                     f'{c.weight_gap_layers!r}')


def _set(config: ml_collections.ConfigDict, key: str, value, member: str) -> None:
  *parents, leaf = key.split('.')
  node = config
  for part in parents:
    if part not in node:
      raise ValueError(f'cohort member {member!r}: unknown config key {key!r}')
    node = node[part]
  if leaf not in node:
    raise ValueError(f'cohort member {member!r}: unknown config key {key!r}')
  try:
    node[leaf] = tuple(value) if isinstance(value, list) else value
  except TypeError as e:
    raise ValueError(f'cohort member {member!r}: {key}={value!r}: {e}') from None


def member_config(config: ml_collections.ConfigDict, name: str,
                  num_classes: int | None = None) -> ml_collections.ConfigDict:
  """The run config of member ``name``: the base without ``cohort``, with its overrides."""
  overrides = flatten(config.cohort.members[name].to_dict())
  c = copy.deepcopy(config)
  with c.unlocked():
    del c['cohort']
    c.mode = 'pretrain'
    c.train.eval_after = False
    objective = overrides.pop('objective.name', None)
    if objective is not None and objective != c.objective.name:
      record = methods.get(objective)
      c.objective = methods.objective_config(objective)
      if methods.get(config.objective.name) is not record:
        c.method = ml_collections.ConfigDict(dict(record.settings))
      # The heads the method cannot do without (sizes from its record); others are kept.
      if record.heads.get('predictor_layers') and not c.model.predictor_layers:
        c.model.predictor_layers = record.heads['predictor_layers']
        c.model.predictor_hidden_dim = record.heads['predictor_hidden_dim']
      if record.heads.get('num_prototypes') and not c.model.num_prototypes:
        c.model.num_prototypes = record.heads['num_prototypes']
    record = methods.get(c.objective.name)
    if not record.classifier:
      c.model.num_classes = 0
    elif not c.model.num_classes and num_classes:
      c.model.num_classes = int(num_classes)
  c.lock()
  for key, value in overrides.items():
    _set(c, key, value, name)
  config_lib.validate(c)
  return c
