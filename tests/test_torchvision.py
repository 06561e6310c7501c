"""torchvision ResNet weights in and out: an independent NumPy (float64) torchvision forward,
round trips, the ``torchvision`` prior, torchvision files in the eval modes, the export mode."""

import importlib.util
import json
import os
import pathlib
import types

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax.run import checkpoint
from glf_jax import config as config_lib
from glf_jax import modes as runner
from glf_jax.evaluate import encoder as encoder_lib
from glf_jax.data import datasets
from glf_jax.models import build_encoder, split_encoder
from glf_jax.models import torchvision as tv
from glf_jax.models.resnet import resnet_tiny
from glf_jax import prior as prior_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# torchvision's ResNet, written out independently: its state-dict shapes (torchvision/models/
# resnet.py, ResNet.__init__ / _make_layer) and its eval-mode forward in float64 NumPy, NCHW.

TORCHVISION_SPECS = {'resnet18': ('basic', [2, 2, 2, 2]), 'resnet34': ('basic', [3, 4, 6, 3]),
                     'resnet50': ('bottleneck', [3, 4, 6, 3])}


def torchvision_shapes(arch, stem='imagenet'):
  """Every entry of torchvision's ``resnet*().state_dict()`` (conv1 3×3 for the CIFAR stem)."""
  block, layers = TORCHVISION_SPECS[arch]
  expansion = 4 if block == 'bottleneck' else 1
  shapes = {}

  def bn(name, c):
    shapes.update({f'{name}.weight': (c,), f'{name}.bias': (c,), f'{name}.running_mean': (c,),
                   f'{name}.running_var': (c,), f'{name}.num_batches_tracked': ()})
  k = 7 if stem == 'imagenet' else 3
  shapes['conv1.weight'] = (64, 3, k, k)
  bn('bn1', 64)
  inplanes = 64
  for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
    stride = 1 if i == 1 else 2
    for j in range(blocks):
      p = f'layer{i}.{j}'
      if block == 'basic':
        shapes[f'{p}.conv1.weight'] = (planes, inplanes, 3, 3)
        bn(f'{p}.bn1', planes)
        shapes[f'{p}.conv2.weight'] = (planes, planes, 3, 3)
        bn(f'{p}.bn2', planes)
      else:
        shapes[f'{p}.conv1.weight'] = (planes, inplanes, 1, 1)
        bn(f'{p}.bn1', planes)
        shapes[f'{p}.conv2.weight'] = (planes, planes, 3, 3)
        bn(f'{p}.bn2', planes)
        shapes[f'{p}.conv3.weight'] = (planes * 4, planes, 1, 1)
        bn(f'{p}.bn3', planes * 4)
      if j == 0 and (stride != 1 or inplanes != planes * expansion):
        shapes[f'{p}.downsample.0.weight'] = (planes * expansion, inplanes, 1, 1)
        bn(f'{p}.downsample.1', planes * expansion)
      inplanes = planes * expansion
  shapes['fc.weight'] = (1000, inplanes)
  shapes['fc.bias'] = (1000,)
  return shapes


def random_state_dict(arch, stem='imagenet', seed=0, fc=True):
  """Random float32 weights with torchvision's names and shapes; BN statistics not trivial."""
  rng = np.random.default_rng(seed)
  sd = {}
  for key, shape in torchvision_shapes(arch, stem).items():
    if key.endswith('num_batches_tracked'):
      sd[key] = np.asarray(rng.integers(0, 1000), np.int64)
    elif key.endswith('running_var'):
      sd[key] = rng.uniform(0.5, 2.0, shape)
    elif key.endswith('running_mean') or key.endswith('.bias'):
      sd[key] = 0.1 * rng.standard_normal(shape)
    elif len(shape) == 4:  # conv: He-normal, N(0, 2 / fan_in)
      sd[key] = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
    elif key.startswith('fc.'):
      sd[key] = 0.01 * rng.standard_normal(shape)
    else:  # BN weight
      sd[key] = rng.uniform(0.2, 1.0, shape)
    if not key.endswith('num_batches_tracked'):
      sd[key] = sd[key].astype(np.float32)
  if not fc:
    del sd['fc.weight'], sd['fc.bias']
  return sd


def np_conv(x, w, stride, pad):
  """``x [N, C, H, W]``, ``w [O, C, k, k]``: zero padding, im2col via stride tricks, matmul."""
  n, c, h, wd = x.shape
  o, _, k, _ = w.shape
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
  win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
  win = win[:, :, ::stride, ::stride][:, :, :ho, :wo]  # [N, C, ho, wo, k, k]
  cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)
  out = cols @ w.reshape(o, c * k * k).T
  return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)


def np_bn(x, sd, name, eps=1e-5):
  g, b = sd[f'{name}.weight'], sd[f'{name}.bias']
  m, v = sd[f'{name}.running_mean'], sd[f'{name}.running_var']
  return ((x - m[:, None, None]) / np.sqrt(v[:, None, None] + eps)) * g[:, None, None] + \
      b[:, None, None]


def np_maxpool(x, k=3, stride=2, pad=1):
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
  h, w = x.shape[2:]
  ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
  return win[:, :, ::stride, ::stride][:, :, :ho, :wo].max(axis=(4, 5))


def relu(x):
  return np.maximum(x, 0.0)


def torchvision_forward(sd, images_nhwc):
  """torchvision ``ResNet.forward`` in eval mode with ``fc = Identity``, float64."""
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  x = np.asarray(images_nhwc, np.float64).transpose(0, 3, 1, 2)
  k = sd['conv1.weight'].shape[-1]
  x = relu(np_bn(np_conv(x, sd['conv1.weight'], 2 if k == 7 else 1, k // 2), sd, 'bn1'))
  if k == 7:
    x = np_maxpool(x)
  for i in range(1, 5):
    j = 0
    while f'layer{i}.{j}.conv1.weight' in sd:
      p, stride = f'layer{i}.{j}', 2 if i > 1 and j == 0 else 1
      if f'{p}.conv3.weight' in sd:  # Bottleneck (v1.5: stride on the 3×3)
        y = relu(np_bn(np_conv(x, sd[f'{p}.conv1.weight'], 1, 0), sd, f'{p}.bn1'))
        y = relu(np_bn(np_conv(y, sd[f'{p}.conv2.weight'], stride, 1), sd, f'{p}.bn2'))
        y = np_bn(np_conv(y, sd[f'{p}.conv3.weight'], 1, 0), sd, f'{p}.bn3')
      else:  # BasicBlock
        y = relu(np_bn(np_conv(x, sd[f'{p}.conv1.weight'], stride, 1), sd, f'{p}.bn1'))
        y = np_bn(np_conv(y, sd[f'{p}.conv2.weight'], 1, 1), sd, f'{p}.bn2')
      if f'{p}.downsample.0.weight' in sd:
        x = np_bn(np_conv(x, sd[f'{p}.downsample.0.weight'], stride, 0), sd, f'{p}.downsample.1')
      x = relu(y + x)
      j += 1
  return x.mean(axis=(2, 3))


# ---------------------------------------------------------------------------------------------
# Our side: one jitted forward, cached on the (static) graph definition.

_FORWARDS = {}


def features(module, x):
  """Eval-mode features of a backbone or an encoder's backbone, float32, jitted."""
  backbone = getattr(module, 'backbone', module)
  backbone.eval()
  graphdef, state = nnx.split(backbone)
  if graphdef not in _FORWARDS:
    _FORWARDS[graphdef] = jax.jit(lambda s, images: nnx.merge(graphdef, s)(images))
  return np.asarray(_FORWARDS[graphdef](state, jnp.asarray(x, jnp.float32)))


def _images(shape, seed=1):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _leaves(module_or_state):
  state = module_or_state if isinstance(module_or_state, nnx.State) else nnx.state(
      module_or_state, nnx.Any(nnx.Param, nnx.BatchStat))
  return {tuple(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


# ---------------------------------------------------------------------------------------------
# Forward equivalence.

@pytest.mark.parametrize('arch, stem, size', [('resnet18', 'cifar', 32),
                                              ('resnet18', 'imagenet', 64),
                                              ('resnet50', 'imagenet', 64)])
def test_forward_matches_numpy_torchvision(arch, stem, size):
  sd = random_state_dict(arch, stem)
  x = _images((2, size, size, 3))
  want = torchvision_forward(sd, x)
  backbone = tv.backbone_from_torchvision(sd)
  got = features(backbone, x)
  assert got.shape == want.shape == (2, tv._feature_dim(arch))
  scale = np.abs(want).max()
  assert scale > 0 and np.abs(want).std() > 0.01 * scale  # not a degenerate comparison
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
  # The encoder loader (the eval modes, the prior) builds the same backbone.
  _, graphdef, params, stats, info = tv.encoder_from_torchvision(sd)
  assert (info['arch'], info['stem']) == (arch, stem)
  np.testing.assert_array_equal(features(nnx.merge(graphdef, params, stats), x), got)


def test_infer_architecture_of_each_depth_and_stem():
  for arch in TORCHVISION_SPECS:
    for stem in ('imagenet', 'cifar'):
      info = tv.infer_architecture({k: np.zeros(shape, np.float32) for k, shape in
                                    torchvision_shapes(arch, stem).items()})
      assert info['arch'] == arch and info['stem'] == stem and info['width_multiplier'] == 1
      assert info['feature_dim'] == (2048 if arch == 'resnet50' else 512)


# ---------------------------------------------------------------------------------------------
# Round trips.

def test_export_then_import_is_identical(tmp_path):
  sd = random_state_dict('resnet18', 'cifar')
  backbone = tv.backbone_from_torchvision(sd)
  exported = tv.backbone_to_torchvision(backbone)
  expected_keys = {k for k in sd if not k.startswith('fc.')}
  assert set(exported) == expected_keys  # every key torchvision has but fc
  for key in expected_keys:
    if key.endswith('num_batches_tracked'):
      assert exported[key].dtype == np.int64 and exported[key].shape == () and exported[key] == 0
    else:
      assert exported[key].dtype == np.float32
      np.testing.assert_array_equal(exported[key], sd[key])
  path = str(tmp_path / 'r18.safetensors')
  tv.save_state_dict(exported, path)
  loaded = tv.load_state_dict(path)
  assert set(loaded) == set(exported)
  assert all(np.array_equal(loaded[k], exported[k]) and loaded[k].dtype == exported[k].dtype
             for k in loaded)
  again = tv.backbone_from_torchvision(loaded)
  before, after = _leaves(backbone), _leaves(again)
  assert before.keys() == after.keys()
  assert all(np.array_equal(before[k], after[k]) for k in before)
  x = _images((2, 32, 32, 3))
  np.testing.assert_array_equal(features(again, x), features(backbone, x))


def test_load_into_an_existing_module_and_refuse_another_stem():
  sd = random_state_dict('resnet18', 'imagenet', fc=False)
  backbone = tv.backbone_from_torchvision(random_state_dict('resnet18', 'imagenet', seed=5))
  tv.load_torchvision_into(backbone, sd)
  assert np.array_equal(_leaves(backbone)[('stem_conv', 'kernel')],
                        sd['conv1.weight'].transpose(2, 3, 1, 0))
  cifar = tv.backbone_from_torchvision(random_state_dict('resnet18', 'cifar'))
  with pytest.raises(ValueError, match='imagenet stem, the module a resnet18 with the cifar'):
    tv.load_torchvision_into(cifar, sd)


# ---------------------------------------------------------------------------------------------
# Errors: one line, naming what is wrong.

def _one_line(excinfo):
  assert '\n' not in str(excinfo.value)
  return str(excinfo.value)


def test_missing_unexpected_and_misshaped_keys_are_named():
  sd = random_state_dict('resnet18')
  del sd['layer3.1.bn2.running_var']
  with pytest.raises(ValueError, match=r'missing \[layer3\.1\.bn2\.running_var\]') as e:
    tv.infer_architecture(sd)
  _one_line(e)
  sd = random_state_dict('resnet18')
  sd['layer1.0.conv3.bias'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError):  # conv3 marks a bottleneck: resnet18's blocks do not fit
    tv.infer_architecture(sd)
  sd = random_state_dict('resnet18')
  sd['layer2.0.extra.weight'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r'unexpected \[layer2\.0\.extra\.weight\]'):
    tv.infer_architecture(sd)
  sd = random_state_dict('resnet18')
  sd['layer4.1.conv2.weight'] = sd['layer4.1.conv2.weight'][:, :256]
  with pytest.raises(ValueError, match=r'layer4\.1\.conv2\.weight \(512, 256, 3, 3\) \(needs '
                     r'\(512, 512, 3, 3\)\)') as e:
    tv.infer_architecture(sd)
  _one_line(e)
  sd = random_state_dict('resnet18')
  sd['conv1.weight'] = np.zeros((64, 3, 5, 5), np.float32)
  with pytest.raises(ValueError, match=r'conv1\.weight has shape \(64, 3, 5, 5\)'):
    tv.infer_architecture(sd)
  with pytest.raises(ValueError, match="strip that prefix"):
    tv.infer_architecture({f'module.{k}': v for k, v in random_state_dict('resnet18').items()})


def test_unsupported_depths_and_widths_are_refused():
  sd = random_state_dict('resnet50')
  for j in range(6, 23):  # ResNet-101: 23 blocks in layer3
    for key in [k for k in list(sd) if k.startswith('layer3.5.')]:
      sd[key.replace('layer3.5.', f'layer3.{j}.')] = sd[key]
  with pytest.raises(ValueError, match=r'blocks per stage \[3, 4, 23, 3\].*not ResNet-101') as e:
    tv.infer_architecture(sd)
  _one_line(e)
  wide = random_state_dict('resnet50')  # wide_resnet50_2: twice the bottleneck width
  for key in list(wide):
    if key.startswith('layer') and ('.conv1.' in key or '.bn1.' in key or '.conv2.' in key
                                    or '.bn2.' in key):
      shape = wide[key].shape
      new = (shape[0] * 2,) + shape[1:] if len(shape) else shape
      if '.conv2.' in key:
        new = (shape[0] * 2, shape[1] * 2) + shape[2:]
      wide[key] = np.zeros(new, wide[key].dtype)
    if key.startswith('layer') and '.conv3.' in key:
      wide[key] = np.zeros((wide[key].shape[0], wide[key].shape[1] * 2, 1, 1), np.float32)
  with pytest.raises(ValueError, match='wide ResNet or ResNeXt is not supported'):
    tv.infer_architecture(wide)
  tiny = nnx.eval_shape(lambda: resnet_tiny(rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match='not a torchvision resnet18/34/50'):
    tv.backbone_to_torchvision(tiny)
  wide18 = nnx.eval_shape(lambda: build_encoder(_model(width_multiplier=2), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match='128 stem filters'):
    tv.module_architecture(wide18)


def _model(**overrides):
  model = config_lib.base_config('simclr', 'cifar10').model
  model.projector_hidden_dim, model.projection_dim = 32, 16
  model.update(overrides)
  return model


def test_files_other_than_safetensors_are_refused(tmp_path):
  pth = tmp_path / 'resnet18.pth'
  pth.write_bytes(b'not read')
  with pytest.raises(ValueError, match='pickled PyTorch file') as e:
    tv.load_state_dict(str(pth))
  message = _one_line(e)
  assert 'torch.load(' in message and 'weights_only=True' in message and 'save_file(' in message
  assert 'resnet18.safetensors' in message
  with pytest.raises(ValueError, match='must be a .safetensors file'):
    tv.load_state_dict(str(tmp_path / 'weights.npz'))
  with pytest.raises(FileNotFoundError):
    tv.load_state_dict(str(tmp_path / 'absent.safetensors'))


# ---------------------------------------------------------------------------------------------
# As an ADC prior.

def test_torchvision_prior_renormalises_to_imagenet_and_needs_h(tmp_path):
  sd = random_state_dict('resnet18', 'cifar')
  path = str(tmp_path / 'prior.safetensors')
  tv.save_state_dict(sd, path)  # with fc and num_batches_tracked: both ignored
  config = config_lib.base_config('simclr+adc', 'cifar10', 'resnet50')  # model: not read
  config.prior.kind = 'torchvision'
  config.prior.path = path
  objective = types.SimpleNamespace(needs=('prior1', 'prior2'))
  apply_fn, state = prior_lib.build_prior(config, objective)
  views = _images((4, 32, 32, 3), seed=3)
  got = np.asarray(jax.jit(apply_fn)(state, jnp.asarray(views)))
  mean, std = np.asarray(config.augment.view1.mean), np.asarray(config.augment.view1.std)
  assert not np.allclose(mean, datasets.IMAGENET_MEAN)  # CIFAR-10's: the re-normalisation acts
  raw = views * std + mean
  want = torchvision_forward(sd, (raw - np.asarray(datasets.IMAGENET_MEAN)) /
                             np.asarray(datasets.IMAGENET_STD))
  assert got.shape == (4, 512)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
  config.prior.feature = 'z'
  with pytest.raises(ValueError, match="prior.feature must be 'h'"):
    prior_lib.build_prior(config, objective)
  config.prior.feature = 'h'
  config.prior.path = str(tmp_path / 'prior.pth')
  with pytest.raises(ValueError, match='convert it once'):
    prior_lib.build_prior(config, objective)


# ---------------------------------------------------------------------------------------------
# In the eval modes, and the export mode.

def _load_config(name):
  spec = importlib.util.spec_from_file_location(f'config_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.optimized  # runs far longer than it compiles
def test_torchvision_file_in_the_knn_mode(tmp_path):
  sd = random_state_dict('resnet18', 'cifar')
  path = str(tmp_path / 'resnet18.safetensors')
  tv.save_state_dict(sd, path)
  config = _load_config('linear_probe')
  config.mode = 'knn'
  config.eval.checkpoint_dir = path
  config.eval.batch_size = 20
  config.eval.max_train_examples, config.eval.max_test_examples = 40, 20
  with pytest.raises(ValueError, match='set --config.eval.data.name') as e:
    runner.run(config, str(tmp_path / 'knn'))
  _one_line(e)
  config.eval.data.name = 'digits'
  summary = runner.run(config, str(tmp_path / 'knn'))
  assert summary['objective'] == 'torchvision' and summary['step'] is None
  assert summary['dataset'] == 'digits'
  assert any(key.startswith('knn') for key in summary['pretrained'])
  assert os.path.isfile(tmp_path / 'knn' / 'summary.json')
  run_config = encoder_lib.torchvision_run_config(tv.infer_architecture(sd), 'digits')
  assert tuple(run_config.eval.transform.mean) == tuple(datasets.IMAGENET_MEAN)
  assert tuple(run_config.augment.view2.std) == tuple(datasets.IMAGENET_STD)
  assert run_config.model.projector_layers == 0 and run_config.model.stem == 'cifar'
  config.eval.checkpoint_dir = str(tmp_path / 'resnet18.pth')
  (tmp_path / 'resnet18.pth').write_bytes(b'x')
  with pytest.raises(ValueError, match='convert it once'):
    runner.run(config, str(tmp_path / 'knn'))


def _save_run(run_dir, run_config, seed=0, step=7):
  """A run directory holding a random encoder of ``run_config.model`` (no initialiser runs)."""
  abstract = nnx.eval_shape(lambda: build_encoder(run_config.model, rngs=nnx.Rngs(0)))
  _, _, params, stats = split_encoder(abstract)
  rng = np.random.default_rng(seed)

  def fill(state):
    items = []
    for path, variable in nnx.to_flat_state(state):
      shape, dtype = variable.get_value().shape, variable.get_value().dtype
      value = (rng.uniform(0.5, 2.0, shape) if path[-1] == 'var'
               else 0.2 * rng.standard_normal(shape))
      items.append((path, variable.replace(jnp.asarray(value, dtype))))
    return nnx.from_flat_state(items)
  params, stats = fill(params), fill(stats)
  with checkpoint.Checkpointer(checkpoint.checkpoint_dir(str(run_dir)), async_save=False) as ckpt:
    ckpt.save(step, {'params': params, 'batch_stats': stats}, data_state={},
              meta={'config': config_lib.to_json(run_config)})
  return params, stats


def test_export_mode_end_to_end(tmp_path):
  run_dir, out = tmp_path / 'run', tmp_path / 'out'
  run_config = config_lib.base_config('simclr', 'cifar10', 'resnet18')
  run_config.model.projector_hidden_dim, run_config.model.projection_dim = 32, 16
  _save_run(run_dir, run_config)
  config = _load_config('export')
  config.eval.checkpoint_dir = str(run_dir)
  summary = runner.run(config, str(out))
  assert summary['mode'] == 'export' and summary['step'] == 7
  weights = out / 'encoder_torchvision.safetensors'
  description = json.loads((out / 'encoder_torchvision.json').read_text())
  assert description['architecture'] == 'resnet18' and description['stem'] == 'cifar'
  assert description['feature_dim'] == 512
  assert description['input']['image_size'] == 32
  assert description['input']['mean'] == list(datasets.CIFAR10_MEAN)
  assert description['input']['std'] == list(datasets.CIFAR10_STD)
  assert description['source'] == {'run': str(run_dir), 'step': 7, 'objective': 'simclr',
                                    'dataset': 'cifar10'}
  assert '3x3 convolution with stride 1 and padding 1' in description[
      'differences_from_torchvision']
  torch_lines = description['torch']
  assert 'm = torchvision.models.resnet18()' in torch_lines
  assert 'm.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)' in torch_lines
  assert 'm.maxpool = nn.Identity()' in torch_lines
  assert not [p for p in os.listdir(out) if p.endswith('.tmp')]  # atomic writes left nothing
  # The round trip through the import path: identical parameters and features.
  state_dict = tv.load_state_dict(str(weights))
  assert set(state_dict) == {k for k in torchvision_shapes('resnet18', 'cifar')
                             if not k.startswith('fc.')}
  _, graphdef, params, stats, _ = tv.encoder_from_torchvision(state_dict)
  imported = nnx.merge(graphdef, params, stats)
  _, run_graphdef, run_params, run_stats, _ = encoder_lib.load_encoder(str(run_dir))
  original = nnx.merge(run_graphdef, run_params, run_stats)
  before, after = _leaves(original.backbone), _leaves(imported.backbone)
  assert before.keys() == after.keys()
  assert all(np.array_equal(before[k], after[k]) for k in before)
  x = _images((2, 32, 32, 3))
  np.testing.assert_array_equal(features(imported, x), features(original, x))
  np.testing.assert_allclose(features(imported, x), torchvision_forward(state_dict, x),
                             rtol=1e-5, atol=1e-5 * np.abs(features(imported, x)).max())


def test_export_refuses_models_without_a_torchvision_counterpart(tmp_path):
  run_config = config_lib.tiny(config_lib.base_config('simclr', 'digits'))
  _save_run(tmp_path / 'tiny', run_config)
  config = _load_config('export')
  config.eval.checkpoint_dir = str(tmp_path / 'tiny')
  with pytest.raises(ValueError, match='its model is resnet_tiny with width_multiplier 1; only '
                     'resnet18, resnet34 and resnet50') as e:
    runner.run(config, str(tmp_path / 'out'))
  _one_line(e)
  config.eval.checkpoint_dir = str(tmp_path / 'x.safetensors')
  with pytest.raises(ValueError, match='already a weights file'):
    runner.run(config, str(tmp_path / 'out'))


@pytest.mark.optimized  # runs far longer than it compiles
@pytest.mark.slow
def test_torchvision_file_in_the_finetune_mode(tmp_path):
  path = str(tmp_path / 'resnet18.safetensors')
  tv.save_state_dict(random_state_dict('resnet18', 'cifar'), path)
  config = _load_config('transfer')
  config.eval.checkpoint_dir = path
  config.eval.data.name = 'digits'
  config.eval.max_train_examples, config.eval.max_test_examples = 32, 16
  config.eval.batch_size = 16
  config.eval.finetune.update(epochs=1, batch_size=16, log_every=0, flip_prob=0.0)
  summary = runner.run(config, str(tmp_path / 'ft'))
  assert summary['objective'] == 'torchvision' and summary['mode'] == 'finetune'
  assert all(np.isfinite(v) for v in summary['pretrained'].values())
