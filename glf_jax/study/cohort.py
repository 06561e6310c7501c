"""Shared-randomness cohorts (arXiv 2510.08852 §5): R members trained in lockstep, in one process.

A cohort is a normal run config (the *base*: data, model, augmentation, schedule, seed) plus
``config.cohort``::

    members            name -> overrides of the base (nested ConfigDict; :func:`cohort_config`
                       takes dotted keys). Only the objective and its numbers may differ:
                       ``objective.*``, ``optim.*``, ``method.*``, ``prior.*``,
                       ``train.online_probe_lr`` and the heads of ``model`` (projector,
                       predictor, prototypes, classifier). A member whose ``objective.name``
                       names another method gets that method's default hyperparameters and
                       settings, then its overrides; a method with a classifier (``ce``) gets
                       ``model.num_classes`` from the data.
    track_every        steps between tracked points (step 0 and the last step are tracked too)
    probe_examples     fixed held-out images (evenly spaced rows of ``probe_split``), <= 10,000
    probe_split        None: ``eval.test_split``
    knn_examples       the kNN bank: evenly spaced rows of ``eval.train_split``
    knn_k              neighbours (clipped to the bank), temperature 0.07 (SPEC §4)
    rsa_examples       RSA uses the first ones of the probe set (RSA is O(n^2) in float64)
    weight_gap_layers  'backbone' (conv kernels: the paper's Σ over weight tensors) or
                       'backbone_bn' (also BatchNorm's γ, as the official
                       scripts/weight_space_coupling.py)
    dispatch           'split' (default): the views by one program, then each member's train
                       step as its own program on them; 'fused': every member's step in one
                       program (XLA computes the shared views once). The same numbers either
                       way; which is faster depends on the network and the device
                       (benchmarks/cohort_step.py)

Why in lockstep: the members must see *the same* randomness — one initial parameter copy, the same
batches in the same order, the same augmentation keys — so that their differences come from the
objectives alone. Here that holds by construction:

* **init**: every member is built from the base seed, then the backbone (and every other part
  whose structure and shapes match: projector, predictor, ...) of member 0 is copied into every
  member and the optimiser / method state re-initialised from the copy;
* **batches**: one loader, one batch per step, fed to every member;
* **augmentation keys**: the train step (``glf_jax.train.step``) draws the views from
  ``fold_in(state['rng'], state['step'])``; the cohort step hands every member member 0's ``rng``
  and ``step`` (equal by construction), so all members' views are the same computation on the
  same inputs, computed once (by its own program, or by XLA's common-subexpression elimination
  when ``dispatch='fused'``).

The state (checkpointed whole with orbax, with the loader's position) is a pytree::

    {'members': {name: TrainState}}   # each a normal glf_jax.train.state train state

Every ``track_every`` steps and at step 0, on the fixed probe set, for every pair of members: linear
CKA and RSA (Pearson, Spearman) on ``h`` and on ``z`` (where both have a projector), the weight gap
(the paper's sum over layers and the official script's mean, from the same per-layer gaps), and
each member's kNN accuracy. One JSON record per tracked step in ``tracks.jsonl`` (cut back to the
resumed step on resume), drawn in ``tracks.png``; ``summary.json`` holds the last record under
``metrics`` (keys ``pair/<a>-<b>/{cka_h, cka_z, rsa_h_pearson, rsa_h_spearman, rsa_z_*,
weight_gap_sum, weight_gap_mean}`` and ``member/<name>/knn_top1``).
``metrics.jsonl`` has each member's loss terms every ``train.log_every`` steps.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import os
import re
import time
from typing import Any, Callable, Mapping, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from glf_jax import config as config_lib
from glf_jax import fileio
from glf_jax import methods
from glf_jax import metrics as metrics_lib
from glf_jax import parallel
from glf_jax import run_records
from glf_jax.data import augment, make_source
from glf_jax.evaluate.knn import knn_accuracy
from glf_jax.train import loop
from glf_jax.train import prior as prior_lib
from glf_jax.train import step as step_lib
from glf_jax.train.setup import Training, build_training

TRACKS_FILE = 'tracks.jsonl'
TRACKS_PLOT = 'tracks.png'
METRICS_FILE = 'metrics.jsonl'
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
    raise ValueError('config.mode=cohort needs config.cohort (glf_jax.study.cohort.cohort_config)')
  c = config.cohort
  names = member_names(config)
  if len(names) < 1:
    raise ValueError('config.cohort.members is empty; give at least one member')
  for name in names:
    if not _NAME.match(name):
      raise ValueError(f'cohort member name {name!r} must match {_NAME.pattern}')
    for key in config_lib.flatten(c.members[name].to_dict()):
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
  overrides = config_lib.flatten(config.cohort.members[name].to_dict())
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


# ----------------------------------------------------------------------------------------------
# Members, their shared initial state and the lockstep step.


@dataclasses.dataclass(frozen=True)
class Member:
  name: str
  config: ml_collections.ConfigDict
  training: Training
  prior_apply: Callable | None
  prior_state: Any


def _flat(tree) -> dict[str, Any]:
  return {jax.tree_util.keystr(path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _part(path) -> str | None:
  return getattr(path[0], 'key', None) if path else None


def _part_signature(tree, part: str):
  """The paths, shapes and dtypes of the leaves of ``tree``'s top-level entry ``part``."""
  return sorted((k, np.shape(v), str(v.dtype)) for k, v in _flat(tree).items()
                if k.startswith(f"['{part}']"))


def share_parts(tree, reference, parts: Sequence[str]):
  """``tree`` with the leaves of each top-level entry in ``parts`` taken from ``reference``."""
  ref = _flat(reference)
  def pick(path, leaf):
    return ref[jax.tree_util.keystr(path)] if _part(path) in parts else leaf
  return jax.tree_util.tree_map_with_path(pick, tree)


def build_members(config, *, steps_per_epoch: int, num_classes: int, source) -> list[Member]:
  out = []
  for name in member_names(config):
    c = member_config(config, name, num_classes)
    training = build_training(c, steps_per_epoch=steps_per_epoch, num_classes=num_classes)
    prior_apply, prior_state = prior_lib.build_prior(c, training.objective, source)
    out.append(Member(name, c, training, prior_apply, prior_state))
  steps = {m.name: m.training.total_steps for m in out}
  if len(set(steps.values())) != 1:
    raise ValueError(f'cohort members must train for the same number of steps, got {steps}')
  return out


def initial_state(members: Sequence[Member]) -> tuple[dict, dict[str, list[str]]]:
  """The cohort state with member 0's shared parts copied into every member (see the module
  docstring), and which parts each member shares with member 0."""
  first = members[0].training.state
  states, shared = {}, {}
  for m in members:
    s = dict(m.training.state)
    parts = [p for p in SHARED_PARTS
             if _part_signature(s['params'], p)
             and _part_signature(s['params'], p) == _part_signature(first['params'], p)
             and _part_signature(s['batch_stats'], p) == _part_signature(first['batch_stats'], p)]
    if 'backbone' not in parts:
      raise ValueError(f'cohort member {m.name!r} has another backbone than member '
                       f'{members[0].name!r}; members may differ only in their heads')
    s['params'] = share_parts(s['params'], first['params'], parts)
    s['batch_stats'] = share_parts(s['batch_stats'], first['batch_stats'], parts)
    t = m.training
    s['opt_state'] = t.tx.init(s['params'])
    s['method'] = t.method.init_state(s['params'], s['batch_stats'], t.run)
    s['rng'] = first['rng']
    if jax.tree.structure(s['probe']) == jax.tree.structure(first['probe']):
      s['probe'] = first['probe']
    states[m.name] = s
    shared[m.name] = parts
  # One buffer per leaf (the jitted step donates the state: no buffer may appear twice).
  return jax.tree.map(lambda x: jnp.array(x, copy=True), {'members': states}), shared


def make_cohort_step(members: Sequence[Member]) -> Callable:
  """The pure ``cohort_step(state, batch, prior_states) -> (state, metrics)``: every member's
  train step on the same batch with member 0's ``rng`` and ``step`` (hence the same views).
  ``metrics`` is ``{name: that member's metrics}``. Not jitted."""
  steps = {m.name: m.training.train_step(m.prior_apply) for m in members}
  first = members[0].name

  def cohort_step(state, batch, prior_states):
    ref = state['members'][first]
    new, metrics = {}, {}
    for name, step_fn in steps.items():
      s = {**state['members'][name], 'rng': ref['rng'], 'step': ref['step']}
      new[name], metrics[name] = step_fn(s, batch, prior_states[name])
    return {'members': new}, metrics

  return cohort_step


def make_split_cohort_step(members: Sequence[Member]) -> Callable:
  """``cohort_step(state, batch, prior_states) -> (state, metrics)`` as separate programs: the
  views by one jitted program (from member 0's ``rng`` and ``step``), then each member's own
  jitted train step on those views, donating that member's state. Each member runs the program a
  separate run of it would (less the augmentation), so a member costs what it costs alone;
  :func:`make_cohort_step` under one ``jax.jit`` lets XLA schedule all members together, which on
  CPU made ResNet-18's cohort step slower than two separate steps
  (``benchmarks/cohort_step.py``). Already jitted; the state is the same pytree."""
  views_of = jax.jit(step_lib.make_views(members[0].training.config.augment))
  steps = {m.name: jax.jit(m.training.train_step(m.prior_apply), donate_argnums=0)
           for m in members}
  first = members[0].name

  def cohort_step(state, batch, prior_states):
    ref = state['members'][first]
    # Every member's rng and step equal member 0's by construction (initial_state, lockstep).
    views = views_of({'rng': ref['rng'], 'step': ref['step']}, batch)
    new, metrics = {}, {}
    for name, step_fn in steps.items():
      new[name], metrics[name] = step_fn(state['members'][name], batch, prior_states[name], views)
    return {'members': new}, metrics

  return cohort_step


def cohort_step_program(members: Sequence[Member], dispatch: str) -> Callable:
  """The jitted cohort step of ``config.cohort.dispatch`` (one of :data:`DISPATCH`)."""
  if dispatch == 'split':
    return make_split_cohort_step(members)
  return jax.jit(make_cohort_step(members), donate_argnums=0)


# ----------------------------------------------------------------------------------------------
# Tracking: representation and weight alignment between members.


def _rows(source, n: int) -> np.ndarray:
  return np.unique(np.linspace(0, len(source) - 1, min(n, len(source))).astype(np.int64))


def _load(source, rows) -> tuple[np.ndarray, np.ndarray]:
  items = [source[int(i)] for i in rows]
  return (np.stack([np.asarray(r['image']) for r in items]),
          np.asarray([int(r['label']) for r in items], np.int32))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode(eval_graphdef, transform, params, batch_stats, images):
  size, mean, std, crop = transform
  x = augment.eval_transform(images, size=size, mean=mean, std=std, crop_fraction=crop)
  out = nnx.merge(eval_graphdef, params, batch_stats)(x)
  return out['h'].astype(jnp.float32), out['z'].astype(jnp.float32)


def encode(eval_graphdef, transform, params, batch_stats, images, batch_size: int):
  """``(h, z)`` float32 NumPy of ``images`` in eval mode, ``batch_size`` rows per call (the last
  call padded, so each member compiles once)."""
  hs, zs = [], []
  n = len(images)
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    real = len(chunk)
    if real < batch_size and n > batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, axis=0)])
    h, z = _encode(eval_graphdef, transform, params, batch_stats, chunk)
    hs.append(np.asarray(h)[:real])
    zs.append(np.asarray(z)[:real])
  return np.concatenate(hs), np.concatenate(zs)


def layer_gaps(params_a, params_b, layers: str = 'backbone') -> list[float]:
  """The per-layer relative gaps ``|Wa - Wb|_F / (½(|Wa|_F + |Wb|_F))`` of the backbone's conv
  kernels (``'backbone'``), plus BatchNorm's scale γ (``'backbone_bn'``), each computed by
  ``glf_jax.metrics.weight_gap`` on that one layer."""
  if layers not in WEIGHT_GAP_LAYERS:
    raise ValueError(f'layers must be one of {WEIGHT_GAP_LAYERS}, got {layers!r}')
  flat_b = _flat(params_b)
  gaps = []
  for path, a in jax.tree_util.tree_flatten_with_path(params_a)[0]:
    if _part(path) != 'backbone':
      continue
    is_scale = any(getattr(k, 'key', None) == 'scale' for k in path)
    if np.ndim(a) >= 2 or (layers == 'backbone_bn' and is_scale):
      gaps.append(metrics_lib.weight_gap([a], [flat_b[jax.tree_util.keystr(path)]], min_ndim=0))
  return gaps


class Tracker:
  """The fixed probe set and kNN bank, and what one tracked step computes."""

  def __init__(self, config, members: Sequence[Member]):
    c = config.cohort
    e = config.eval
    self.members = members
    self.layers = c.weight_gap_layers
    self.batch_size = int(e.batch_size)
    probe_source = make_source(config.data, c.probe_split or e.test_split)
    bank_source = make_source(config.data, e.train_split)
    self.probe_x, self.probe_y = _load(probe_source, _rows(probe_source, c.probe_examples))
    self.bank_x, self.bank_y = _load(bank_source, _rows(bank_source, c.knn_examples))
    self.num_classes = int(bank_source.num_classes)
    self.k = min(int(c.knn_k), len(self.bank_y))
    self.rsa_n = min(int(c.rsa_examples), len(self.probe_y))
    t = config.eval.transform
    self.transform = (int(t.image_size), tuple(float(m) for m in t.mean),
                      tuple(float(s) for s in t.std), float(t.crop_fraction))
    self.has_projector = {m.name: bool(m.config.model.projector_layers) for m in members}

  def __call__(self, state: dict, step: int) -> dict[str, Any]:
    record: dict[str, Any] = {'step': int(step)}
    feats = {}
    for m in self.members:
      s = state['members'][m.name]
      g = m.training.eval_graphdef
      h, z = encode(g, self.transform, s['params'], s['batch_stats'], self.probe_x,
                    self.batch_size)
      bank_h, _ = encode(g, self.transform, s['params'], s['batch_stats'], self.bank_x,
                         self.batch_size)
      feats[m.name] = (h, z)
      record[f'member/{m.name}/knn_top1'] = knn_accuracy(
          bank_h, self.bank_y, h, self.probe_y, k=self.k, num_classes=self.num_classes)
    for a, b in itertools.combinations([m.name for m in self.members], 2):
      key = f'pair/{a}-{b}'
      kinds = [('h', 0)] + ([('z', 1)] if self.has_projector[a] and self.has_projector[b] else [])
      for kind, i in kinds:
        x, y = feats[a][i], feats[b][i]
        record[f'{key}/cka_{kind}'] = metrics_lib.linear_cka(x, y)
        for method in ('pearson', 'spearman'):
          record[f'{key}/rsa_{kind}_{method}'] = metrics_lib.rsa(
              x[:self.rsa_n], y[:self.rsa_n], method=method)
      gaps = layer_gaps(state['members'][a]['params'], state['members'][b]['params'],
                        self.layers)
      record[f'{key}/weight_gap_sum'] = float(np.sum(gaps))
      record[f'{key}/weight_gap_mean'] = float(np.mean(gaps))
    record['wall_time'] = time.time()
    return record


def read_tracks(workdir: str) -> list[dict[str, Any]]:
  return loop.read_metrics_log(os.path.join(workdir, TRACKS_FILE))


def plot_tracks(workdir: str, records: Sequence[Mapping[str, Any]] | None = None) -> str | None:
  """``tracks.png``: CKA, RSA (Pearson), weight gap (sum) of every pair and each member's kNN
  accuracy against the step (matplotlib's Agg canvas: headless)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top  (only here)
  records = list(read_tracks(workdir) if records is None else records)
  if not records:
    return None
  keys = sorted({k for r in records for k in r})
  panels = [('CKA (h)', [k for k in keys if k.endswith('/cka_h')]),
            ('RSA Pearson (h)', [k for k in keys if k.endswith('/rsa_h_pearson')]),
            ('weight gap (sum over layers)', [k for k in keys if k.endswith('/weight_gap_sum')]),
            ('kNN top-1', [k for k in keys if k.endswith('/knn_top1')])]
  figure = Figure(figsize=(16, 3.6))
  for i, (title, names) in enumerate(panels):
    ax = figure.add_subplot(1, len(panels), i + 1)
    for key in names:
      pairs = [(r['step'], r[key]) for r in records if isinstance(r.get(key), (int, float))]
      if pairs:
        steps, values = zip(*pairs)
        ax.plot(steps, values, marker='.', label=key.split('/')[1])
    ax.set_title(title)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    if names:
      ax.legend(fontsize=7)
  figure.tight_layout()
  path = os.path.join(workdir, TRACKS_PLOT)
  with fileio.atomic_write(path, 'wb') as f:
    figure.savefig(f, format='png', dpi=90)
  return path


# ----------------------------------------------------------------------------------------------
# The loop.


def run_cohort(config: ml_collections.ConfigDict, workdir: str, *,
               on_step: Callable[[int], bool | None] | None = None) -> dict:
  """Trains (or resumes) the cohort in ``workdir`` and returns its summary (also written to
  ``summary.json``; see the module docstring). ``on_step(step)`` (tests, drivers) is called after
  every step; returning True stops as SIGTERM does (checkpoint, then return with
  ``status='interrupted'``)."""
  return train_cohort(config, workdir, on_step=on_step)[0]


def train_cohort(config: ml_collections.ConfigDict, workdir: str, *,
                 on_step: Callable[[int], bool | None] | None = None) -> tuple[dict, dict]:
  """:func:`run_cohort`, returning ``(summary, final cohort state)``."""
  check_cohort_config(config)
  if jax.process_count() > 1:
    raise ValueError('a cohort runs in one process (its tracking reads every member on process '
                     '0); use the devices of one host (train.num_devices)')
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  mesh = parallel.make_mesh(config.train.num_devices)
  source, num_classes, loader = loop.open_training_data(config)
  steps_per_epoch = loader.steps_per_epoch
  members = build_members(config, steps_per_epoch=steps_per_epoch, num_classes=num_classes,
                          source=source)
  total_steps = members[0].training.total_steps
  state, shared = initial_state(members)
  replicated = parallel.replicated(mesh)
  state = jax.device_put(state, replicated)
  prior_states = jax.device_put({m.name: m.prior_state for m in members}, replicated)

  first = members[0].name
  ckpt, state, iterator, restored_meta = loop.open_checkpoint(
      workdir, config, state, loader, what='cohort',
      step_of=lambda s: s['members'][first]['step'])
  step = int(state['members'][first]['step'])
  cohort_step = cohort_step_program(members, config.cohort.dispatch)
  tracker = Tracker(config, members)
  track_every = int(config.cohort.track_every)
  log_every = max(1, int(config.train.log_every))
  meta_out = {'config': config_lib.to_json(config), 'steps_per_epoch': steps_per_epoch,
              'num_classes': num_classes, 'total_steps': total_steps,
              'members': [m.name for m in members]}

  tracks_path = os.path.join(workdir, TRACKS_FILE)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  if is_chief:
    loop.trim_metrics_log(tracks_path, step)
    loop.trim_metrics_log(metrics_path, step)
    print(f'cohort of {len(members)} on {config.data.name}: '
          + ', '.join(f'{m.name} ({m.config.objective.name})' for m in members)
          + f'\n  {config.model.arch}, batch {config.train.batch_size}, {total_steps} steps '
          f'({steps_per_epoch}/epoch), tracked every {track_every} on '
          f'{len(tracker.probe_y)} probe images  |  '
          + (f'resumed from step {step}' if step else 'starting from step 0'), flush=True)
  tracked_steps = {r['step'] for r in read_tracks(workdir)} if is_chief else set()

  def track(step_now):
    if not is_chief or step_now in tracked_steps:
      return
    record = tracker(state, step_now)
    record['epoch'] = step_now / steps_per_epoch
    with open(tracks_path, 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')
    tracked_steps.add(step_now)
    cka = '  '.join(f'{k.split("/")[1]} cka {v:.3f}' for k, v in record.items()
                    if k.endswith('/cka_h'))
    print(f'track step {step_now}: {cka}', flush=True)

  prior_seconds = float(restored_meta.get('train_seconds', 0.0))
  start_step, t_start = step, time.perf_counter()

  def seconds(step_now):
    return prior_seconds + (time.perf_counter() - t_start if step_now > start_step else 0.0)

  def save(step_now, force=False):
    meta_out.update(train_seconds=seconds(step_now))
    return ckpt.save(step_now, state, data_state=iterator.get_state(), meta=meta_out,
                     force=force)

  def log(step_now, step_metrics):
    flat = {f'{name}/{k}': float(v) for name, ms in step_metrics.items() for k, v in ms.items()}
    for name, ms in step_metrics.items():
      if int(ms['nonfinite_in_a_row']) >= config.train.max_nonfinite_in_a_row:
        ckpt.wait_until_finished()
        raise loop.NonFiniteLossError(
            f'cohort member {name!r}: {int(ms["nonfinite_in_a_row"])} non-finite losses in a '
            f'row, the last at step {step_now}; terms: {flat}. The last good checkpoint (step '
            f'{ckpt.latest_step()}) is kept in {ckpt.directory}.')
    if is_chief and (step_now % log_every == 0 or step_now == total_steps):
      with open(metrics_path, 'a', encoding='utf-8') as f:
        f.write(json.dumps({'step': step_now, **flat, 'wall_time': time.time()}) + '\n')
      print(f'step {step_now}/{total_steps}  ' + '  '.join(
          f'{name} loss {float(ms["loss"]):.4f}' for name, ms in step_metrics.items()),
            flush=True)

  def advance():
    nonlocal state
    batch = parallel.to_global_batch(next(iterator), mesh)
    state, step_metrics = cohort_step(state, batch, prior_states)
    return step_metrics

  def is_tracked(step_now):
    return step_now % track_every == 0 or step_now == total_steps

  if is_tracked(step):
    track(step)
  try:
    step, stop_signal = loop.run_steps(
        step=step, total_steps=total_steps, advance=advance, report=log, save=save,
        every_steps=config.checkpoint.every_steps, ckpt=ckpt, is_chief=is_chief,
        report_now=is_tracked, after_step=lambda s: track(s) if is_tracked(s) else None,
        on_step=on_step)
  finally:
    ckpt.close()
  interrupted = stop_signal is not None

  records = read_tracks(workdir) if is_chief else []
  final = records[-1] if records else {}
  train_seconds = seconds(step)
  summary = {
      'mode': 'cohort', 'status': 'interrupted' if interrupted else 'finished',
      'stop_signal': stop_signal,
      'step': step, 'total_steps': total_steps, 'dataset': config.data.name,
      'arch': config.model.arch, 'seed': config.seed,
      'members': {m.name: {'objective': m.config.objective.name, 'shared_with_first': shared[
          m.name]} for m in members},
      'weight_gap_layers': config.cohort.weight_gap_layers,
      'probe_examples': int(len(tracker.probe_y)),
      'train_seconds': train_seconds,
      'images_per_second': step * config.train.batch_size / max(train_seconds, 1e-9)
      if step > start_step else None,
      'tracked_steps': [r['step'] for r in records],
      # The last tracked values (flat: 'pair/<a>-<b>/cka_h', 'member/<m>/knn_top1', ...), where
      # glf_jax.study.aggregate reads a cohort cell's metrics.
      'metrics': {k: v for k, v in final.items() if k not in ('wall_time', 'epoch')},
  }
  if is_chief:
    plot_tracks(workdir, records)
    with fileio.atomic_write(os.path.join(workdir, run_records.SUMMARY), 'w',
                             encoding='utf-8') as f:
      json.dump(summary, f, indent=2, default=float)
  return summary, state
