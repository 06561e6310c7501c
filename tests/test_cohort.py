"""Shared-randomness cohorts (glf_jax.study.cohort): members share their initial parameters,
batches and augmentation keys; step 0 is tracked with CKA 1 and weight gap 0; a cohort stopped by
SIGTERM resumes to exactly the state of an uninterrupted one. Digits, a tiny ResNet, a few steps."""

import json
import os
import signal

import jax
import ml_collections
import numpy as np
import pytest

from glf_jax import config as config_lib
from glf_jax import metrics
from glf_jax import cohort
from glf_jax.data import make_source
from glf_jax.run import layout
from glf_jax.train import state as state_lib


def _config(members, *, steps=4, **settings):
  c = config_lib.tiny(config_lib.base_config('simclr', 'digits', 'resnet_tiny'))
  c.train.batch_size = 32
  c.train.num_steps = steps
  c.train.num_devices = 1
  c.train.log_every = 1
  c.optim.name = 'adamw'
  c.optim.base_learning_rate = 1e-2  # large enough that a few steps move every member
  c.optim.lr_scaling = 'none'
  c.optim.warmup_epochs = 0.0
  c.checkpoint.every_steps = 2
  c.checkpoint.async_save = False
  c.eval.batch_size = 64
  defaults = dict(track_every=2, probe_examples=48, knn_examples=64, rsa_examples=48)
  defaults.update(settings)
  cohort.cohort_config(c, members, **defaults)
  config_lib.validate(c)
  return c


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_identical(a, b):
  la, lb = _leaves(a), _leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def _tracks(workdir):
  return [json.loads(line) for line in (workdir / layout.TRACKS_LOG).read_text().splitlines()]


def test_same_objective_members_stay_bit_identical_others_diverge(tmp_path):
  """Two members with one objective and its numbers end bit-identical only if they started from
  one parameter copy and saw the same batches and views at every step; a CE member (classifier
  head) trains in the same program and moves away."""
  same = {'objective.simclr.temperature': 0.5}
  config = _config([('a', same), ('b', same), ('ce', {'objective.name': 'ce'})])
  summary, state = cohort.train_cohort(config, str(tmp_path))
  assert summary['status'] == 'finished' and summary['step'] == 4
  assert summary['members']['ce']['objective'] == 'ce'
  members = state['members']
  assert int(members['a']['step']) == 4
  _assert_identical(members['a'], members['b'])
  # CE's encoder has a classifier (model.num_classes from the data) and shares the backbone.
  assert 'classifier' in members['ce']['params']
  assert 'backbone' in summary['members']['ce']['shared_with_first']
  moved = [not np.array_equal(x, y) for x, y in zip(_leaves(members['a']['params']['backbone']),
                                                     _leaves(members['ce']['params']['backbone']))]
  assert any(moved)

  records = _tracks(tmp_path)
  assert [r['step'] for r in records] == summary['tracked_steps'] == [0, 2, 4]
  first, last = records[0], records[-1]
  for pair in ('a-b', 'a-ce', 'b-ce'):
    assert first[f'pair/{pair}/cka_h'] == pytest.approx(1.0, abs=1e-5)
    assert first[f'pair/{pair}/cka_z'] == pytest.approx(1.0, abs=1e-5)
    assert first[f'pair/{pair}/rsa_h_pearson'] == pytest.approx(1.0, abs=1e-9)
    assert first[f'pair/{pair}/weight_gap_sum'] == 0.0
    assert first[f'pair/{pair}/weight_gap_mean'] == 0.0
  assert last['pair/a-b/cka_h'] == pytest.approx(1.0, abs=1e-5)
  assert last['pair/a-b/weight_gap_sum'] == 0.0
  assert last['pair/a-ce/weight_gap_sum'] > 0.0
  assert last['pair/a-ce/cka_h'] < 1.0 - 1e-6
  for name in ('a', 'b', 'ce'):
    assert 0.0 <= last[f'member/{name}/knn_top1'] <= 1.0
  assert summary['metrics'] == {k: v for k, v in last.items() if k not in ('wall_time', 'epoch')}
  assert (tmp_path / layout.TRACKS_PLOT).stat().st_size > 0
  written = json.loads((tmp_path / 'summary.json').read_text())
  assert written['tracked_steps'] == [0, 2, 4] and written['mode'] == 'cohort'


class _Killed(Exception):
  """Stands for SIGKILL: the process stops where it is, nothing more is saved."""


@pytest.mark.slow  # three cohort runs (~60 s): in CI, not in the fast tier
def test_cohort_stopped_by_sigterm_or_killed_resumes_exactly(tmp_path):
  members = [('cl', {'objective.simclr.temperature': 0.5}), ('nscl', {'objective.name': 'nscl'})]
  config = _config(members, steps=6)
  reference, ref_state = cohort.train_cohort(config, str(tmp_path / 'reference'))
  assert reference['status'] == 'finished'

  resumed = tmp_path / 'resumed'
  def stop_at_3(step):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # the real handler (run.session._StopFlag) sets the flag
  first, _ = cohort.train_cohort(config, str(resumed), on_step=stop_at_3)
  assert first['status'] == 'interrupted' and first['stop_signal'] == 'SIGTERM'
  assert first['step'] == 3
  assert [r['step'] for r in _tracks(resumed)] == [0, 2]
  # A record past the checkpoint (a run killed after tracking, before saving) is cut on resume.
  with open(resumed / layout.TRACKS_LOG, 'a', encoding='utf-8') as f:
    f.write(json.dumps({'step': 5, 'pair/cl-nscl/cka_h': 0.5}) + '\n')
  second, state = cohort.train_cohort(config, str(resumed))
  assert second['status'] == 'finished' and second['step'] == 6
  _assert_identical(ref_state, state)
  tracks = _tracks(resumed)
  assert [r['step'] for r in tracks] == [0, 2, 4, 6]
  assert tracks[-1]['pair/cl-nscl/cka_h'] == pytest.approx(
      reference['metrics']['pair/cl-nscl/cka_h'], abs=1e-6)

  # Killed at step 5, after the periodic checkpoint of step 4 (no forced save): the command
  # resumes from step 4 and ends bit-identical to the uninterrupted run, even with the other
  # dispatch (how the step executes, not what it computes: no config change).
  killed = tmp_path / 'killed'
  def kill_at_5(step):
    if step == 5:
      raise _Killed()
  with pytest.raises(_Killed):
    cohort.train_cohort(config, str(killed), on_step=kill_at_5)
  assert not (killed / 'summary.json').exists()
  steps_run = []
  fused = _config(members, steps=6, dispatch='fused')
  assert config.cohort.dispatch == 'split'
  third, state = cohort.train_cohort(fused, str(killed), on_step=steps_run.append)
  assert steps_run == [5, 6]  # resumed from the step-4 checkpoint, not from scratch
  assert third['status'] == 'finished' and third['step'] == 6
  _assert_identical(ref_state, state)
  assert [r['step'] for r in _tracks(killed)] == [0, 2, 4, 6]

  # A changed config is refused on resume.
  changed = _config([members[0], ('nscl', {'objective.name': 'nscl',
                                           'objective.nscl.temperature': 0.2})], steps=6)
  with pytest.raises(ValueError, match='cohort.members.nscl'):
    cohort.run_cohort(changed, str(resumed))


def test_member_config_overrides_and_json_round_trip():
  config = _config([('cl', {'objective.simclr.temperature': 0.3}),
                    ('ce', {'objective.name': 'ce', 'optim.base_learning_rate': 0.1})])
  ce = cohort.member_config(config, 'ce', num_classes=10)
  assert ce.objective.name == 'ce' and ce.model.num_classes == 10
  assert ce.optim.base_learning_rate == 0.1 and 'cohort' not in ce
  cl = cohort.member_config(config, 'cl')
  assert cl.objective.simclr.temperature == 0.3 and cl.model.num_classes == 0
  assert cl.model.projection_dim == ce.model.projection_dim
  loaded = ml_collections.ConfigDict(json.loads(config_lib.to_json(config)))
  assert cohort.member_names(loaded) == cohort.member_names(config) == ['ce', 'cl']
  assert loaded.cohort.members.to_dict() == config.cohort.members.to_dict()

  for key in ('train.batch_size', 'model.arch', 'data.name', 'seed', 'augment.view1.flip_prob'):
    bad = _config([('x', {key: config_lib.flatten(config.to_dict())[key]})])
    with pytest.raises(ValueError, match='which the members share'):
      cohort.check_cohort_config(bad)
  with pytest.raises(ValueError, match='unknown config key'):
    cohort.member_config(_config([('x', {'objective.simclr.temprature': 0.1})]), 'x')
  with pytest.raises(ValueError, match='probe_examples'):
    cohort.check_cohort_config(_config([('x', {})], probe_examples=10_001))
  with pytest.raises(ValueError, match="cohort.dispatch must be one of \\('split', 'fused'\\)"):
    cohort.check_cohort_config(_config([('x', {})], dispatch='vmap'))
  several = _config([('x', {})])
  several.train.steps_per_call = 4
  with pytest.raises(ValueError, match='a cohort runs one step per call'):
    cohort.check_cohort_config(several)


def test_initial_state_copies_shared_parts_and_layer_gaps():
  config = _config([('a', {}), ('wide', {'model.projection_dim': 24})])
  source = make_source(config.data, 'train')
  members = cohort.build_members(config, steps_per_epoch=10, num_classes=10, source=source)
  state, shared = cohort.initial_state(members)
  assert shared == {'a': ['backbone', 'projector'], 'wide': ['backbone']}
  a, wide = state['members']['a'], state['members']['wide']
  _assert_identical(a['params']['backbone'], wide['params']['backbone'])
  # share_parts takes the named parts from the reference, the rest from the tree.
  shifted = jax.tree.map(lambda x: x + 1.0, a['params'])
  mixed = cohort.share_parts(a['params'], shifted, ['backbone'])
  _assert_identical(mixed['backbone'], shifted['backbone'])
  _assert_identical(mixed['projector'], a['params']['projector'])

  # Layer gaps: the summed gap is metrics.weight_gap on the backbone's kernels; with BatchNorm's
  # scale more layers count.
  other = config_lib.tiny(config_lib.base_config('simclr', 'digits', 'resnet_tiny'))
  other.seed = 1
  _, _, params_1, _, _ = state_lib.init_encoder(other)
  gaps = cohort.layer_gaps(a['params'], params_1, 'backbone')
  gaps_bn = cohort.layer_gaps(a['params'], params_1, 'backbone_bn')
  assert len(gaps_bn) > len(gaps) > 1
  assert sum(gaps) == pytest.approx(
      metrics.weight_gap(a['params']['backbone'], params_1['backbone']), rel=1e-5)
  assert cohort.layer_gaps(a['params'], a['params'], 'backbone_bn') == [0.0] * len(gaps_bn)


def _gflop(compiled):
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def _cl_nscl_members_and_batches(n: int):
  """A CL + NSCL cohort's config, members, initial state, and ``n`` random digit-sized batches."""
  config = _config([('cl', {'objective.simclr.temperature': 0.5}),
                    ('nscl', {'objective.name': 'nscl'})])
  source = make_source(config.data, 'train')
  members = cohort.build_members(config, steps_per_epoch=10, num_classes=10, source=source)
  state, _ = cohort.initial_state(members)
  rng = np.random.default_rng(0)
  batches = [{'image': rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8),
              'label': rng.integers(0, 10, (32,), dtype=np.int32)} for _ in range(n)]
  return config, members, state, batches


@pytest.mark.slow  # four compilations (~45 s): in CI, not in the fast tier
def test_cohort_step_computes_the_shared_views_once():
  """Every member's step gets member 0's key and step, so XLA computes the two views once: the
  compiled 2-member step has two separate steps' operations minus (about) one two_views."""
  from glf_jax.data import augment  # pylint: disable=g-import-not-at-top
  config, members, state, (batch,) = _cl_nscl_members_and_batches(1)
  priors = {m.name: None for m in members}
  together = _gflop(jax.jit(cohort.make_cohort_step(members)).lower(state, batch, priors).compile())
  apart = sum(_gflop(jax.jit(m.training.train_step(None)).lower(
      state['members'][m.name], batch, None).compile()) for m in members)
  views = _gflop(jax.jit(lambda k, x: augment.two_views(k, x, config.augment)).lower(
      jax.random.key(0), batch['image']).compile())
  assert apart - together > 0.8 * views, (apart, together, views)


@pytest.mark.slow  # five compilations (~40 s): in CI, not in the fast tier
def test_split_and_fused_cohort_steps_equal_each_member_trained_alone():
  """Both dispatches of a cohort step give every member the very state (bit for bit) its own train
  step gives it (what a separate run executes) from the same state and batches, over two steps."""
  _, members, state, batches = _cl_nscl_members_and_batches(2)
  priors = {m.name: None for m in members}
  copy = lambda tree: jax.tree.map(lambda x: x.copy(), tree)  # noqa: E731  (steps donate)
  got = {}
  for dispatch in cohort.DISPATCH:
    step_fn, s = cohort.cohort_step_program(members, dispatch), copy(state)
    for batch in batches:
      s, step_metrics = step_fn(s, batch, priors)
    got[dispatch] = (s, step_metrics)
  for m in members:
    alone_fn, s = jax.jit(m.training.train_step(None)), copy(state['members'][m.name])
    for batch in batches:
      s, alone_metrics = alone_fn(s, batch, None)
    assert int(s['step']) == 2
    for dispatch, (cohort_state, cohort_metrics) in got.items():
      for x, y in zip(_leaves(cohort_state['members'][m.name]), _leaves(s)):
        np.testing.assert_array_equal(x, y, err_msg=f"{dispatch} {m.name}")
      assert float(cohort_metrics[m.name]['loss']) == pytest.approx(
          float(alone_metrics['loss']), rel=1e-5)
  # The members moved apart (different objectives), so the comparison above is not vacuous.
  assert not np.allclose(_leaves(got['split'][0]['members']['cl']['params'])[0],
                         _leaves(got['split'][0]['members']['nscl']['params'])[0])
