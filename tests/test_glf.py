"""The GLF objective builder: composition by config, clear errors for bad names and values."""

import jax
import numpy as np
import pytest

from glf_jax import losses
from glf_jax.losses import glf

RNG = np.random.default_rng(0)
N, D = 6, 5
OUTPUTS = {k: RNG.standard_normal((N, D)).astype(np.float32)
           for k in ('z1', 'z2', 'p1', 'p2', 't1', 't2')}
OUTPUTS['prior1'], OUTPUTS['prior2'] = [RNG.standard_normal((N, 9)).astype(np.float32)
                                        for _ in range(2)]
OUTPUTS['prototypes'] = RNG.standard_normal((4, D)).astype(np.float32)
OUTPUTS['logits'] = RNG.standard_normal((N, 3)).astype(np.float32)
BATCH = {'label': RNG.integers(0, 3, N).astype(np.int32)}


@pytest.mark.parametrize('method,direct', [
    ('simclr', lambda o, b: losses.nt_xent(o['z1'], o['z2'])),
    ('balanced', lambda o, b: losses.balanced_contrastive(o['z1'], o['z2'])),
    ('nscl', lambda o, b: losses.nscl(o['z1'], o['z2'], b['label'])),
    ('supcon', lambda o, b: losses.supcon(o['z1'], o['z2'], b['label'])),
    ('ce', lambda o, b: losses.cross_entropy(o['logits'], b['label'])),
    ('byol', lambda o, b: losses.byol(o['p1'], o['p2'], o['t1'], o['t2'])),
    ('barlow_twins', lambda o, b: losses.barlow_twins(o['z1'], o['z2'])),
    ('swav', lambda o, b: losses.swav(o['z1'], o['z2'], o['prototypes'])),
])
@pytest.mark.parametrize('with_adc', [False, True])
def test_objective_is_aligning_term_plus_constraints(method, direct, with_adc):
  name = method + ('+adc' if with_adc else '')
  objective = losses.build_objective(losses.objective_config(name))
  loss, aux = jax.jit(objective)(OUTPUTS, BATCH)
  expected = float(direct(OUTPUTS, BATCH)[0])
  np.testing.assert_allclose(aux[method], expected, rtol=1e-6)
  if with_adc:
    adc_value, _ = losses.adc(OUTPUTS['z1'], OUTPUTS['z2'], OUTPUTS['prior1'], OUTPUTS['prior2'])
    np.testing.assert_allclose(aux['adc'], adc_value, rtol=1e-6)
    expected += float(adc_value)
    assert 'adc/dcm' in aux and 'adc/lpm' in aux
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(aux['loss'], loss)


def test_config_overrides_reach_the_losses():
  config = losses.objective_config('balanced+adc')
  config.balanced.alpha = 2.0
  config.balanced.similarity = 'dot'
  config.balanced.block_size = 4
  config.adc.nu, config.adc.upsilon, config.adc.rho = 0.5, 0.0, 7.0
  config.adc.use_prior = False
  loss, aux = losses.build_objective(config)(OUTPUTS, BATCH)
  z1, z2 = OUTPUTS['z1'], OUTPUTS['z2']
  expected = (losses.balanced_contrastive(z1, z2, alpha=2.0, similarity='dot')[0]
              + 0.5 * losses.dcm(z1, z2, rho=7.0)[0])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize('name,match', [
    ('simclrr', 'aligning term'),
    ('simclr+adcc', 'constraint term'),
    ('adc', 'aligning term'),
    ('simclr+adc+adc', 'repeats'),
    ('', 'non-empty'),
])
def test_unknown_names_are_rejected(name, match):
  with pytest.raises(ValueError, match=match):
    losses.objective_config(name)


@pytest.mark.parametrize('term,key,value,match', [
    ('simclr', 'temperature', 0.0, r'simclr.temperature must be a finite number > 0'),
    ('simclr', 'temperature', -1.0, 'temperature'),
    ('simclr', 'similarity', 'cos', r"similarity must be one of \['cosine'"),
    ('adc', 'rho', 2.0, r'rho must be > 2'),
    ('adc', 'rho', 1.5, 'rho'),
    ('adc', 'sigma2', 0.0, 'sigma2'),
    ('adc', 'nu', -0.1, r'nu must be a finite number >= 0'),
    ('adc', 'upsilon', -1.0, 'upsilon'),
])
def test_invalid_hyperparameters_are_rejected_at_build_time(term, key, value, match):
  config = losses.objective_config(f'simclr+adc')
  config[term][key] = value
  with pytest.raises(ValueError, match=match):
    losses.build_objective(config)


def test_balanced_alpha_checked():
  config = losses.objective_config('balanced')
  config.balanced.alpha = 0.0
  with pytest.raises(ValueError, match='alpha'):
    losses.build_objective(config)


def test_unknown_config_keys_are_rejected():
  config = losses.objective_config('simclr')
  config.simclr.temprature = 0.2
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['temprature'\] in objective.simclr"):
    losses.build_objective(config)
  config = losses.objective_config('simclr')
  config.swavv = {}
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['swavv'\]"):
    losses.build_objective(config)


def test_missing_outputs_and_labels_are_named():
  objective = losses.build_objective(losses.objective_config('nscl+adc'))
  with pytest.raises(ValueError, match=r"needs model outputs \['prior1', 'prior2'\]"):
    objective({'z1': OUTPUTS['z1'], 'z2': OUTPUTS['z2']}, BATCH)
  with pytest.raises(ValueError, match=r'needs batch\["label"\]'):
    objective(OUTPUTS, {})


@pytest.mark.parametrize('call,match', [
    (lambda: losses.nt_xent(np.ones((4, 3)), np.ones((5, 3))), 'same shape'),
    (lambda: losses.nt_xent(np.ones((4,)), np.ones((4,))), r'shape \[N, D\]'),
    (lambda: losses.nscl(np.ones((4, 3)), np.ones((4, 3)), np.zeros(3, np.int32)),
     r'labels must have shape \[4\]'),
    (lambda: losses.supcon(np.ones((4, 3)), np.ones((4, 3)), np.zeros(4)), 'integers'),
    (lambda: losses.dcm(np.ones((4, 3)), np.ones((4, 3)), rho=2.0), 'rho'),
    (lambda: losses.dcm(np.ones((4, 3)), np.ones((4, 3)), sigma2=-1.0), 'sigma2'),
    (lambda: losses.dcm(np.ones((4, 3)), np.ones((4, 3)), weights=np.ones(4)), 'weights'),
    (lambda: losses.lpm(np.ones((4, 3)), np.ones((4, 3)), np.ones((3, 2)), np.ones((3, 2))),
     'prior1 must have 4 rows'),
    (lambda: losses.adc(np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2))), 'both prior1'),
    (lambda: losses.swav(np.ones((4, 3)), np.ones((4, 3)), np.ones((5, 2))), 'prototypes'),
    (lambda: losses.balanced_contrastive(np.ones((4, 3)), np.ones((4, 3)), lam=0.0), 'lam'),
    (lambda: losses.byol(np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2)), np.ones((4, 2))),
     'same shape'),
])
def test_loss_functions_validate_their_inputs(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_a_new_constraint_plugs_into_every_method():
  term = glf.Term(lambda o, b, weight: (weight * (o['z1'] ** 2).mean(), {}), dict(weight=1.0))
  glf.register_constraint('l2_test', term)
  try:
    config = losses.objective_config('byol+l2_test')
    config.l2_test.weight = 3.0
    loss, aux = losses.build_objective(config)(OUTPUTS, BATCH)
    np.testing.assert_allclose(aux['l2_test'], 3.0 * (OUTPUTS['z1'] ** 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(loss, aux['byol'] + aux['l2_test'], rtol=1e-6)
  finally:
    del glf.CONSTRAINT_TERMS['l2_test']
