"""Every config in configs/ loads, validates and traces one train step (shrunk to a tiny model)."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax.train import config as config_lib
from glf_jax.train import prior as prior_lib
from glf_jax.train.setup import build_training

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_FILES = sorted((ROOT / 'configs').glob('*.py'))
ARG_CONFIGS = [p for p in CONFIG_FILES if p.stem.split('_')[0] in ('cifar10', 'cifar100',
                                                                   'imagenet100')]


def _load(path, arg=None):
  spec = importlib.util.spec_from_file_location(f'config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.__doc__ and 'python -m glf_jax.main' in module.__doc__, (
      f'{path.name}: the docstring must give the command that runs it')
  return module.get_config(arg) if arg is not None else module.get_config()


def _trace_one_step(config):
  config = config_lib.tiny(config)
  config_lib.validate(config)
  for view in (config.augment.view1, config.augment.view2):
    view.image_size = 16
  batch = {'image': jax.ShapeDtypeStruct((8, 20, 20, 3), jnp.uint8),
           'label': jax.ShapeDtypeStruct((8,), jnp.int32)}
  config.train.batch_size = 8
  training = build_training(config, steps_per_epoch=5, num_classes=10, abstract=True)
  prior_apply, prior_state = prior_lib.build_prior(config)
  new_state, metrics = jax.eval_shape(training.train_step(prior_apply), training.state, batch,
                                      prior_state)
  assert jax.tree.structure(new_state) == jax.tree.structure(training.state)
  assert metrics['loss'].shape == ()


@pytest.mark.parametrize('path', CONFIG_FILES, ids=lambda p: p.stem)
def test_config_loads_and_traces_one_step(path):
  _trace_one_step(_load(path))


@pytest.mark.parametrize('path', ARG_CONFIGS, ids=lambda p: p.stem)
def test_adc_argument_adds_adc(path):
  config = _load(path, 'adc')
  assert config.objective.name.endswith('+adc')
  assert config.objective.adc.nu == 0.1 and config.objective.adc.upsilon == 0.1
  _trace_one_step(config)


def test_resnet50_argument_and_bad_argument():
  path = ROOT / 'configs' / 'imagenet100_simclr.py'
  config = _load(path, 'adc,resnet50')
  assert config.model.arch == 'resnet50' and config.model.stem == 'imagenet'
  with pytest.raises(ValueError, match='unknown config argument'):
    _load(path, 'resnet51')


def test_paper_hyperparameters():
  config = _load(ROOT / 'configs' / 'cifar10_simclr.py', 'adc')
  assert config.model.arch == 'resnet18' and config.train.batch_size == 512
  assert config.optim.name == 'lars' and config.model.stem == 'cifar'
  byol = _load(ROOT / 'configs' / 'cifar10_byol.py')
  assert byol.model.predictor_hidden_dim > 0 and byol.byol.ema_base == 0.99
  assert byol.augment.view1.blur_prob == 1.0 and byol.augment.view2.solarize_prob == 0.2


def test_changed_config_is_reported_by_key():
  a = config_lib.base_config('simclr', 'cifar10')
  b = config_lib.base_config('simclr', 'cifar10')
  b.optim.base_learning_rate = 9.0
  b.mode = 'eval'                  # run-control fields do not count as changes
  assert config_lib.config_differences(config_lib.to_json(a), b) == ['optim.base_learning_rate']


def test_bad_run_settings_are_rejected():
  config = config_lib.base_config('simclr', 'digits')
  config.mode = 'dance'
  with pytest.raises(ValueError, match='config.mode'):
    config_lib.validate(config)
  config = config_lib.base_config('simclr', 'digits')
  config.train.batch_size = 0
  with pytest.raises(ValueError, match='train.batch_size'):
    config_lib.validate(config)
  with pytest.raises(ValueError, match='dataset'):
    config_lib.base_config('simclr', 'mnist')
  np.testing.assert_equal(config_lib.parse_config_arg(''), set())
