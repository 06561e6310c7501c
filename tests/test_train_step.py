"""The pure train step, its optimisers and schedules: what each method's update must do."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from glf_jax import config as config_lib
from glf_jax import methods
from glf_jax import prior as prior_lib
from glf_jax.models import weights as weights_lib
from glf_jax.runtime import devices
from glf_jax.constraints import CONSTRAINTS
from glf_jax.losses import glf
from glf_jax.methods import momentum
from glf_jax.models import decay_mask
from glf_jax.train import optim
from glf_jax.train import step as step_lib
from glf_jax.train.setup import build_training

BATCH = 16
SIZE = 16
STEPS_PER_EPOCH = 5


def _config(name):
  config = config_lib.tiny(config_lib.base_config(name, 'digits', 'resnet_tiny'))
  config.train.batch_size = BATCH
  for view in (config.augment.view1, config.augment.view2):
    view.image_size = SIZE
  if 'wmse' in config.objective:
    config.objective.wmse.w_size = 8
  return config


def _batch(seed=0):
  rng = np.random.RandomState(seed)
  return {'image': rng.randint(0, 256, (BATCH, SIZE, SIZE, 3)).astype(np.uint8),
          'label': (np.arange(BATCH) % 10).astype(np.int32)}


def _pieces(config, total_steps=20):
  """The jitted step, initial state and prior state, as the training loop builds them."""
  config.train.num_steps = total_steps
  config_lib.validate(config)
  training = build_training(config, steps_per_epoch=STEPS_PER_EPOCH, num_classes=10)
  prior_apply, prior_state = prior_lib.build_prior(config, training.objective)
  return jax.jit(training.train_step(prior_apply)), training.state, prior_state


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


# ---------------------------------------------------------------------------------------------
# Optimisers and schedules.


def test_schedule_warms_up_linearly_then_decays_by_cosine():
  config = optim.default_optim_config('sgd')
  config.base_learning_rate, config.warmup_epochs = 0.2, 2
  schedule = optim.learning_rate_schedule(config, global_batch_size=512, total_steps=100,
                                          steps_per_epoch=10)
  peak = 0.2 * 512 / 256
  np.testing.assert_allclose(float(schedule(0)), 0.0)
  np.testing.assert_allclose(float(schedule(10)), peak / 2, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(20)), peak, rtol=1e-6)
  # Halfway through the cosine part the rate is half the peak.
  np.testing.assert_allclose(float(schedule(60)), peak / 2, rtol=1e-5)
  assert float(schedule(100)) < 1e-6


def test_lr_scaling_none_keeps_the_base_rate():
  config = optim.default_optim_config('adamw')
  config.lr_scaling = 'none'
  assert optim.peak_learning_rate(config, 4096) == config.base_learning_rate


def test_lars_excludes_biases_and_batchnorm_from_decay_and_adaptation():
  params = {'kernel': jnp.ones((3, 4)), 'bias': jnp.ones((4,)), 'scale': jnp.ones((4,))}
  assert decay_mask(params) == {'kernel': True, 'bias': False, 'scale': False}
  config = optim.default_optim_config('lars')
  config.weight_decay = 0.5
  tx = optim.make_optimizer(config, optax.constant_schedule(1.0))
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  # With zero gradients only weight decay moves a parameter: kernels move, 1-D ones do not.
  assert np.all(np.asarray(updates['kernel']) != 0)
  np.testing.assert_array_equal(updates['bias'], 0)
  np.testing.assert_array_equal(updates['scale'], 0)


@pytest.mark.parametrize('field,value,message', [
    ('name', 'adagrad', 'optim.name'),
    ('base_learning_rate', 0.0, 'base_learning_rate'),
    ('weight_decay', -1.0, 'weight_decay'),
    ('momentum', 1.0, 'momentum'),
    ('lr_scaling', 'cube', 'lr_scaling'),
])
def test_bad_optimiser_settings_are_rejected(field, value, message):
  config = optim.default_optim_config('sgd')
  config[field] = value
  with pytest.raises(ValueError, match=message):
    schedule = optim.learning_rate_schedule(config, global_batch_size=256, total_steps=10,
                                            steps_per_epoch=5)
    optim.make_optimizer(config, schedule)


@pytest.mark.parametrize('scaling,factor', [('linear', 4.0), ('sqrt', 2.0),
                                            ('fourth_root', 2.0 ** 0.5), ('none', 1.0)])
def test_lr_scaling_rules(scaling, factor):
  config = optim.default_optim_config('sgd')
  config.lr_scaling = scaling
  np.testing.assert_allclose(optim.peak_learning_rate(config, 1024),
                             config.base_learning_rate * factor, rtol=1e-12)


def test_ema_decay_goes_from_base_to_one():
  run = methods.RunInfo(settings={'ema_base': 0.99}, total_steps=100, steps_per_epoch=10)
  np.testing.assert_allclose(float(momentum.ema_decay(0, run)), 0.99, rtol=1e-6)
  np.testing.assert_allclose(float(momentum.ema_decay(50, run)), 0.995, rtol=1e-6)
  np.testing.assert_allclose(float(momentum.ema_decay(100, run)), 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The step.


@pytest.mark.parametrize('name', sorted(methods.METHODS) + [
    pytest.param(name, marks=pytest.mark.slow)  # +adc: the fast tier has simclr+adc elsewhere
    for name in ('simclr+adc', 'swav+adc', 'simsiam+adc', 'mocov3+adc', 'wmse+adc', 'ce+adc')])
def test_step_updates_parameters_and_reports_every_term(name):
  config = _config(name)
  step, state, prior_state = _pieces(config)
  before = _leaves(state['params'])
  new_state, metrics = step(state, _batch(), prior_state)  # warm-up: step 0 has lr 0
  # Step 1 moves CE's zero-initialised classifier; only from step 2 on does its loss reach h.
  for i in (1, 2):
    new_state, metrics = step(new_state, _batch(i), prior_state)
  assert int(new_state['step']) == 3 and float(metrics['finite']) == 1.0
  for term in methods.build_objective(config.objective).term_names:
    assert term in metrics and np.isfinite(float(metrics[term]))
  changed = [not np.array_equal(a, b) for a, b in zip(before, _leaves(new_state['params']))]
  # Heads a loss does not read (CE's projector) may stay put; the backbone must move.
  assert sum(changed) > len(changed) // 2 or name.startswith('ce')
  backbone = [not np.array_equal(a, b) for a, b in zip(
      _leaves(state['params']['backbone']), _leaves(new_state['params']['backbone']))]
  assert sum(backbone) > len(backbone) // 2


def test_contrastive_family_starts_from_one_parameter_copy():
  # SimCLR, NSCL, SupCon, the balanced loss and cross-entropy share backbone and projector.
  states = {}
  for name in ('simclr', 'nscl', 'supcon', 'balanced', 'ce'):
    _, state, _ = _pieces(_config(name))
    states[name] = state
  reference = states['simclr']['params']
  for name, state in states.items():
    for part in ('backbone', 'projector'):
      for a, b in zip(_leaves(reference[part]), _leaves(state['params'][part])):
        np.testing.assert_array_equal(a, b)
  assert 'classifier' in states['ce']['params'] and 'classifier' not in reference


@pytest.mark.parametrize('name', ['byol', 'mocov3'])
def test_momentum_target_is_the_ema_of_the_online_backbone_and_projector(name):
  config = _config(name)
  step, state, prior_state = _pieces(config)
  target = state['method']['target_params']
  assert sorted(target.keys()) == ['backbone', 'projector']  # no predictor: online only
  for part in ('backbone', 'projector'):  # the target starts as a copy
    for a, b in zip(_leaves(state['params'][part]), _leaves(target[part])):
      np.testing.assert_array_equal(a, b)
  target0 = _leaves(target)
  new_state, metrics = step(state, _batch(), prior_state)
  tau = float(metrics['ema_decay'])
  online1 = nnx.filter_state(new_state['params'], lambda path, _: path[0] != 'predictor')
  for t0, t1, o1 in zip(target0, _leaves(new_state['method']['target_params']),
                        _leaves(online1)):
    np.testing.assert_allclose(t1, tau * t0 + (1 - tau) * o1, rtol=1e-5, atol=1e-7)


def test_objective_name_with_spaces_builds_the_same_run():
  # methods.parse_name strips around '+': the method, its state and the prior read it the same.
  config = _config('byol+adc')
  config.objective.name = 'byol + adc'
  step, state, prior_state = _pieces(config)
  assert jax.tree.leaves(state['method']['target_params'])  # BYOL's EMA target exists
  _, metrics = step(state, _batch(), prior_state)
  assert 'ema_decay' in metrics and np.isfinite(float(metrics['loss']))
  assert np.isfinite(float(metrics['adc/lpm']))  # ADC's prior (LPM) was built and used


def test_dcm_only_builds_no_prior():
  config = _config('simclr+adc')
  config.objective.adc.upsilon = 0.0
  training = build_training(config, steps_per_epoch=STEPS_PER_EPOCH, num_classes=10)
  assert prior_lib.build_prior(config, training.objective) == (None, {})
  config.objective.adc.entropy_weights_without_lpm = True
  training = build_training(config, steps_per_epoch=STEPS_PER_EPOCH, num_classes=10)
  assert prior_lib.build_prior(config, training.objective)[0] is not None


def _prototypes(params):
  return np.asarray(params['prototypes'][...])


def test_swav_prototypes_are_frozen_then_trained_and_stay_normalised():
  config = _config('swav')
  config.method.freeze_prototypes_epochs = 2 / STEPS_PER_EPOCH
  step, state, prior_state = _pieces(config)
  c0 = _prototypes(state['params'])
  state, _ = step(state, _batch(0), prior_state)
  state, _ = step(state, _batch(1), prior_state)
  np.testing.assert_array_equal(_prototypes(state['params']), c0)
  state, _ = step(state, _batch(2), prior_state)
  c3 = _prototypes(state['params'])
  assert not np.array_equal(c3, c0)
  np.testing.assert_allclose(np.linalg.norm(c3, axis=1), 1.0, rtol=1e-5)


def test_nonfinite_loss_skips_the_update_and_counts(monkeypatch):
  monkeypatch.setitem(CONSTRAINTS, 'always_nan', glf.Constraint('always_nan', glf.Term(
      lambda o, b: (jnp.nan * jnp.sum(o['z1']), {}), {})))
  config = _config('simclr+always_nan')
  step, state, prior_state = _pieces(config)
  params0, stats0 = _leaves(state['params']), _leaves(state['batch_stats'])
  state, metrics = step(state, _batch(), prior_state)
  state, metrics = step(state, _batch(1), prior_state)
  assert float(metrics['finite']) == 0.0
  assert int(state['nonfinite_in_a_row']) == 2 and int(state['nonfinite_total']) == 2
  assert int(state['step']) == 2
  for a, b in zip(params0 + stats0, _leaves(state['params']) + _leaves(state['batch_stats'])):
    np.testing.assert_array_equal(a, b)


def test_sharded_step_equals_one_device_step():
  """Same batch on 1 and 8 devices: same update (BatchNorm statistics over the global batch)."""
  config = _config('simclr+adc')
  step, state, prior_state = _pieces(config)
  single_state, single_metrics = step(jax.tree.map(jnp.copy, state), _batch(), prior_state)

  mesh = devices.make_mesh(8)
  sharded_state = jax.device_put(state, devices.replicated(mesh))
  batch = devices.to_global_batch(_batch(), mesh)
  assert len(batch['image'].sharding.device_set) == 8
  multi_state, multi_metrics = step(sharded_state, batch, prior_state)
  np.testing.assert_allclose(float(multi_metrics['loss']), float(single_metrics['loss']),
                             rtol=1e-5)
  for a, b in zip(_leaves(single_state['params']) + _leaves(single_state['batch_stats']),
                  _leaves(multi_state['params']) + _leaves(multi_state['batch_stats'])):
    np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-6)


def test_steps_in_one_call_on_8_devices_equal_the_steps_one_by_one():
  """train.steps_per_call: scan_steps over 3 batches sharded on 8 devices gives the three single
  steps' metrics (stacked) and state, up to float rounding (XLA compiles the loop's body on its
  own), with the batch still sharded inside the loop."""
  config = _config('simclr+adc')
  config.train.num_steps = 20
  config_lib.validate(config)
  training = build_training(config, steps_per_epoch=STEPS_PER_EPOCH, num_classes=10)
  prior_apply, prior_state = prior_lib.build_prior(config, training.objective)
  step = training.train_step(prior_apply)
  mesh = devices.make_mesh(8)
  state = jax.device_put(training.state, devices.replicated(mesh))
  batches = tuple(devices.to_global_batch(_batch(seed), mesh) for seed in range(3))

  one_by_one, metrics = jax.jit(step)(jax.tree.map(jnp.copy, state), batches[0], prior_state), []
  metrics.append(one_by_one[1])
  for batch in batches[1:]:
    one_by_one = jax.jit(step)(one_by_one[0], batch, prior_state)
    metrics.append(one_by_one[1])
  scanned, stacked = jax.jit(step_lib.scan_steps(step))(state, batches, prior_state)
  assert stacked['loss'].shape == (3,) and int(scanned['step']) == 3
  np.testing.assert_allclose(np.asarray(stacked['loss']), [float(m['loss']) for m in metrics],
                             rtol=1e-5)
  for a, b in zip(_leaves(one_by_one[0]['params']), _leaves(scanned['params'])):
    np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-6)


def _prior(config):
  objective = methods.build_objective(config.objective)
  return prior_lib.build_prior(config, objective)


def test_random_and_weights_priors_are_frozen_encoders(tmp_path):
  config = _config('simclr+adc')
  config.prior.kind = 'random'
  apply_fn, prior_state = _prior(config)
  views = jnp.ones((4, SIZE, SIZE, 3))
  features = apply_fn(prior_state, views)
  assert features.shape[0] == 4 and np.all(np.isfinite(features))
  # The same weights, exported and re-imported, give the same prior features.
  path = str(tmp_path / 'prior.safetensors')
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from glf_jax.models import build_encoder  # pylint: disable=g-import-not-at-top
  encoder = build_encoder(config.model, rngs=nnx.Rngs(int(config.prior.seed)))
  weights_lib.export_weights(nnx.state(encoder, nnx.Any(nnx.Param, nnx.BatchStat)), path)
  config.prior.kind, config.prior.path = 'weights', path
  apply_w, state_w = _prior(config)
  np.testing.assert_allclose(apply_w(state_w, views), features, rtol=1e-6)
  # Gradients never flow into the prior.
  grad = jax.grad(lambda v: jnp.sum(apply_fn(prior_state, v)))(views)
  np.testing.assert_array_equal(grad, 0)
  # A malformed weights file: one line naming it, not the reader's raw error.
  with open(path, 'r+b') as f:
    f.truncate(64)
  with pytest.raises(ValueError, match=f'cannot read the weights file {path} '
                     r'\(SafetensorError: ') as info:
    _prior(config)
  assert '\n' not in str(info.value)


@pytest.mark.parametrize('kind,path,message', [
    ('clip', None, 'prior.kind'),
    ('weights', None, 'prior.path'),
    ('weights', '/nonexistent/w.npz', 'no weights file'),
])
def test_bad_prior_settings_are_rejected(kind, path, message):
  config = _config('simclr+adc')
  config.prior.kind, config.prior.path = kind, path
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    _prior(config)


def test_a_12px_run_trains_and_is_evaluated_at_12px():
  """One image size per run: data.image_size moves the views, the evaluation transform and the
  pixel prior with it, so the network really sees 12 px (issue: a "16 px" run trained at 32)."""
  config = config_lib.tiny(config_lib.base_config('simclr+adc', 'digits', 'resnet_tiny'))
  config.train.batch_size = BATCH
  config.data.image_size = 12  # digits are stored at 16
  assert config.augment.view1.image_size == config.augment.view2.image_size == 12
  assert config.eval.transform.image_size == 12
  step, state, prior_state = _pieces(config)
  batch = {'image': np.zeros((BATCH, 12, 12, 3), np.uint8), 'label': _batch()['label']}
  views = step_lib.make_views(config.augment)(state, batch)
  assert views.shape == (2 * BATCH, 12, 12, 3)
  prior_apply, _ = prior_lib.build_prior(config, methods.build_objective(config.objective))
  assert prior_apply(prior_state, views).shape == (2 * BATCH, 12 * 12 * 3)
  state, metrics = step(state, batch, prior_state)
  assert np.isfinite(float(metrics['loss']))


def test_image_sizes_that_disagree_are_refused_naming_the_keys():
  config = config_lib.base_config('simclr', 'digits', 'resnet_tiny')
  config.augment.view1.image_size = config.augment.view2.image_size = 12  # on purpose: allowed
  assert config.data.image_size == 16 and config.eval.transform.image_size == 12
  config_lib.validate(config)
  config.augment.view2.image_size = 8
  with pytest.raises(ValueError, match=r'augment.view1.image_size \(12\) and '
                                       r'augment.view2.image_size \(8\) differ'):
    config_lib.validate(config)
  config.augment.view1.image_size = config.augment.view2.image_size = 24
  with pytest.raises(ValueError, match=r'augment.view\*.image_size \(24\) is larger than '
                                       r'data.image_size \(16\)'):
    config_lib.validate(config)
  config.augment.view1.image_size = config.augment.view2.image_size = 16
  config.eval.transform.image_size = 8
  with pytest.raises(ValueError, match=r'eval.transform.image_size \(8\) differs'):
    config_lib.validate(config)
