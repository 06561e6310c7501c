"""The pure train step, its optimisers and schedules: what each method's update must do."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glf_jax import parallel
from glf_jax.losses import build_objective
from glf_jax.losses import glf
from glf_jax.train import config as config_lib
from glf_jax.train import optim, prior as prior_lib, step as step_lib
from glf_jax.train.setup import build_training

BATCH = 16
SIZE = 16


def _config(name):
  config = config_lib.tiny(config_lib.base_config(name, 'digits', 'resnet_tiny'))
  config.train.batch_size = BATCH
  for view in (config.augment.view1, config.augment.view2):
    view.image_size = SIZE
  return config


def _batch(seed=0):
  rng = np.random.RandomState(seed)
  return {'image': rng.randint(0, 256, (BATCH, SIZE, SIZE, 3)).astype(np.uint8),
          'label': (np.arange(BATCH) % 10).astype(np.int32)}


def _pieces(config, total_steps=20, swav_freeze_steps=0):
  """The jitted step, initial state and prior state, as the training loop builds them."""
  steps_per_epoch = 5
  config.train.num_steps = total_steps
  config.swav.freeze_prototypes_epochs = swav_freeze_steps / steps_per_epoch
  training = build_training(config, steps_per_epoch=steps_per_epoch, num_classes=10)
  prior_apply, prior_state = prior_lib.build_prior(config)
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
  assert optim.decay_mask(params) == {'kernel': True, 'bias': False, 'scale': False}
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
    ('lr_scaling', 'sqrt', 'lr_scaling'),
])
def test_bad_optimiser_settings_are_rejected(field, value, message):
  config = optim.default_optim_config('sgd')
  config[field] = value
  with pytest.raises(ValueError, match=message):
    schedule = optim.learning_rate_schedule(config, global_batch_size=256, total_steps=10,
                                            steps_per_epoch=5)
    optim.make_optimizer(config, schedule)


def test_byol_ema_decay_goes_from_base_to_one():
  tau = optim.ema_decay_schedule(0.99, 100)
  np.testing.assert_allclose(float(tau(0)), 0.99, rtol=1e-6)
  np.testing.assert_allclose(float(tau(50)), 0.995, rtol=1e-6)
  np.testing.assert_allclose(float(tau(100)), 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The step.


@pytest.mark.parametrize('name', ['simclr+adc', 'byol', 'barlow_twins', 'swav+adc', 'nscl'])
def test_step_updates_parameters_and_reports_every_term(name):
  config = _config(name)
  step, state, prior_state = _pieces(config)
  before = _leaves(state['params'])
  new_state, metrics = step(state, _batch(), prior_state)  # warm-up: step 0 has lr 0
  new_state, metrics = step(new_state, _batch(1), prior_state)
  assert int(new_state['step']) == 2 and float(metrics['finite']) == 1.0
  for term in build_objective(config.objective).term_names:
    assert term in metrics and np.isfinite(float(metrics[term]))
  changed = [not np.array_equal(a, b) for a, b in zip(before, _leaves(new_state['params']))]
  assert sum(changed) > len(changed) // 2


def test_byol_target_is_the_ema_of_the_online_network():
  config = _config('byol')
  step, state, prior_state = _pieces(config)
  online0 = _leaves(state['params'])
  target0 = _leaves(state['target_params'])
  np.testing.assert_array_equal(online0[0], target0[0])  # the target starts as a copy
  new_state, metrics = step(state, _batch(), prior_state)
  tau = float(metrics['ema_decay'])
  for t0, t1, o1 in zip(target0, _leaves(new_state['target_params']),
                        _leaves(new_state['params'])):
    np.testing.assert_allclose(t1, tau * t0 + (1 - tau) * o1, rtol=1e-5, atol=1e-7)



def test_objective_name_with_spaces_builds_the_same_run():
  # glf.parse_name strips around '+': the step, state and prior must read the name the same way.
  config = _config('byol+adc')
  config.objective.name = 'byol + adc'
  assert prior_lib.uses_prior(config)
  assert prior_lib.build_prior(config)[0] is not None  # ADC's prior (LPM) is built
  step, state, prior_state = _pieces(config)
  assert jax.tree.leaves(state['target_params'])  # BYOL's EMA target exists
  _, metrics = step(state, _batch(), prior_state)
  assert 'ema_decay' in metrics and np.isfinite(float(metrics['loss']))

def _prototypes(params):
  return np.asarray(step_lib._get_prototypes(params))  # pylint: disable=protected-access


def test_swav_prototypes_are_frozen_then_trained_and_stay_normalised():
  config = _config('swav')
  step, state, prior_state = _pieces(config, swav_freeze_steps=2)
  c0 = _prototypes(state['params'])
  state, _ = step(state, _batch(0), prior_state)
  state, _ = step(state, _batch(1), prior_state)
  np.testing.assert_array_equal(_prototypes(state['params']), c0)
  state, _ = step(state, _batch(2), prior_state)
  c3 = _prototypes(state['params'])
  assert not np.array_equal(c3, c0)
  np.testing.assert_allclose(np.linalg.norm(c3, axis=1), 1.0, rtol=1e-5)


def test_nonfinite_loss_skips_the_update_and_counts():
  if 'always_nan' not in glf.CONSTRAINT_TERMS:  # one registry for the whole session
    glf.register_constraint('always_nan', glf.Term(
        lambda o, b: (jnp.nan * jnp.sum(o['z1']), {}), {}))
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

  mesh = parallel.make_mesh(8)
  sharded_state = jax.device_put(state, parallel.replicated(mesh))
  batch = parallel.to_global_batch(_batch(), mesh)
  assert len(batch['image'].sharding.device_set) == 8
  multi_state, multi_metrics = step(sharded_state, batch, prior_state)
  np.testing.assert_allclose(float(multi_metrics['loss']), float(single_metrics['loss']),
                             rtol=1e-5)
  for a, b in zip(_leaves(single_state['params']) + _leaves(single_state['batch_stats']),
                  _leaves(multi_state['params']) + _leaves(multi_state['batch_stats'])):
    np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-6)


def test_random_and_weights_priors_are_frozen_encoders(tmp_path):
  config = _config('simclr+adc')
  config.prior.kind = 'random'
  apply_fn, prior_state = prior_lib.build_prior(config)
  views = jnp.ones((4, SIZE, SIZE, 3))
  features = apply_fn(prior_state, views)
  assert features.shape[0] == 4 and np.all(np.isfinite(features))
  # The same weights, exported and re-imported, give the same prior features.
  path = str(tmp_path / 'prior.safetensors')
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from glf_jax.models import build_encoder  # pylint: disable=g-import-not-at-top
  encoder = build_encoder(config.model, rngs=nnx.Rngs(int(config.prior.seed)))
  prior_lib.export_weights(nnx.state(encoder, nnx.Any(nnx.Param, nnx.BatchStat)), path)
  config.prior.kind, config.prior.path = 'weights', path
  apply_w, state_w = prior_lib.build_prior(config)
  np.testing.assert_allclose(apply_w(state_w, views), features, rtol=1e-6)
  # Gradients never flow into the prior.
  grad = jax.grad(lambda v: jnp.sum(apply_fn(prior_state, v)))(views)
  np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize('kind,path,message', [
    ('clip', '', 'prior.kind'),
    ('weights', '', 'prior.path'),
    ('weights', '/nonexistent/w.npz', 'no weights file'),
])
def test_bad_prior_settings_are_rejected(kind, path, message):
  config = _config('simclr+adc')
  config.prior.kind, config.prior.path = kind, path
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    prior_lib.build_prior(config)
