"""ResNet backbones, heads and the encoder: sizes, shapes, dtypes, BatchNorm modes and sharding.

Large models are only built abstractly (``nnx.eval_shape``): nothing of their size is allocated.
Everything that runs uses ``resnet_tiny`` (two basic blocks, 8 and 16 filters) on 8-16 px images.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from glf_jax import losses
from glf_jax import models

B, HW = 16, 8


def _images(n=B, hw=HW, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, hw, hw, 3), jnp.float32)


def _tiny(**kw):
  return models.resnet_tiny(rngs=nnx.Rngs(0), **kw)


def _batch_stats(module):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat)))


def _trees_allclose(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, **tol)


# --- sizes --------------------------------------------------------------------------------------

# torchvision's parameter counts minus the 1000-way classifier (512·1000 + 1000 or 2048·1000 +
# 1000); the CIFAR stem replaces the 7×7×3×64 stem kernel (9408) by a 3×3×3×64 one (1728).
PUBLISHED = {
    ('resnet18', 'cifar'): 11_168_832,      # ≈ 11.17 M
    ('resnet18', 'imagenet'): 11_176_512,
    ('resnet34', 'imagenet'): 21_284_672,   # ≈ 21.28 M
    ('resnet50', 'imagenet'): 23_508_032,   # ≈ 23.51 M
}


@pytest.mark.parametrize('arch,stem', sorted(PUBLISHED))
def test_param_count_matches_published(arch, stem):
  model = nnx.eval_shape(lambda: models.RESNETS[arch](stem=stem, rngs=nnx.Rngs(0)))
  count = models.count_params(model)
  assert abs(count - PUBLISHED[arch, stem]) <= 0.005 * PUBLISHED[arch, stem]
  assert count == PUBLISHED[arch, stem]  # in fact exact: the layer shapes are torchvision's


def test_count_params_counts_only_params():
  model = _tiny()
  _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  n_stats = sum(x.size for x in jax.tree.leaves(stats))
  assert n_stats > 0
  assert models.count_params(model) == n_params
  assert models.count_params(nnx.state(model)) == n_params       # State with BatchStats too
  assert models.count_params(params) == n_params
  assert models.count_params({'w': np.zeros((3, 4))}) == 12        # plain pytree: counted whole


def test_conv_init_and_no_bias():
  model = nnx.eval_shape(lambda: models.resnet18(rngs=nnx.Rngs(0)))
  convs = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Conv)]
  assert len(convs) == 1 + 16 + 3                     # stem, 2 per block, 3 projection shortcuts
  assert all(c.bias is None for c in convs)
  # He-normal, fan_out: std = sqrt(2 / (kh·kw·out)).
  kernel = models.resnet.conv_kernel_init(jax.random.key(0), (3, 3, 64, 128), jnp.float32)
  np.testing.assert_allclose(np.std(kernel), np.sqrt(2 / (9 * 128)), rtol=0.03)


# --- shapes and dtypes --------------------------------------------------------------------------

@pytest.mark.parametrize('kw,hw,feature_dim', [
    (dict(), 8, 16),
    (dict(stem='imagenet'), 32, 16),
    (dict(width_multiplier=2), 8, 32),
    (dict(block='bottleneck'), 8, 64),
])
def test_tiny_output_shapes(kw, hw, feature_dim):
  model = _tiny(**kw)
  assert model.feature_dim == feature_dim
  assert model(_images(4, hw)).shape == (4, feature_dim)


def test_stem_spatial_sizes():
  x = _images(2, 32)
  cifar, imagenet = _tiny(), _tiny(stem='imagenet')
  assert cifar.stem_conv(x).shape == (2, 32, 32, 8)
  # 7×7/2 conv then 3×3/2 pool with PyTorch's symmetric padding: 32 → 16 → 8 (224 → 112 → 56).
  y = imagenet.stem_conv(x)
  assert y.shape == (2, 16, 16, 8)
  assert nnx.max_pool(y, (3, 3), (2, 2), ((1, 1), (1, 1))).shape == (2, 8, 8, 8)


@pytest.mark.parametrize('arch,kw,feature_dim', [
    ('resnet18', dict(stem='cifar'), 512),
    ('resnet18', dict(stem='imagenet', width_multiplier=2), 1024),
    ('resnet50', dict(stem='imagenet'), 2048),
    ('resnet50', dict(stem='cifar', width_multiplier=2), 4096),
])
@pytest.mark.slow
def test_full_size_feature_dims(arch, kw, feature_dim):
  hw = 224 if kw['stem'] == 'imagenet' else 32

  dims = []

  def forward():
    model = models.RESNETS[arch](rngs=nnx.Rngs(0), **kw)
    dims.append(model.feature_dim)
    return model(jnp.zeros((2, hw, hw, 3)))

  h = nnx.eval_shape(forward)   # traced only: no parameters, no FLOPs
  assert dims == [feature_dim] and h.shape == (2, feature_dim)


@pytest.mark.slow
def test_bfloat16_compute_float32_params():
  model = _tiny(dtype=jnp.bfloat16)
  h = model(_images())   # train mode: also updates the running statistics
  assert h.dtype == jnp.bfloat16
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))

  config = models.default_model_config('resnet_tiny', predictor_layers=2)
  config.update(dtype='bfloat16', projector_hidden_dim=32, projection_dim=8,
                predictor_hidden_dim=16)
  encoder = models.build_encoder(config, rngs=nnx.Rngs(0))
  out = encoder(_images(4))
  assert {k: v.dtype for k, v in out.items()} == dict.fromkeys('hzp', jnp.bfloat16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(encoder, nnx.Param)))


# --- train vs eval: only BatchNorm differs -----------------------------------------------------

def test_eval_mode_is_per_sample_train_mode_is_not():
  x = _images()
  model = _tiny()
  model.eval()
  np.testing.assert_allclose(model(x)[:4], model(x[:4]), rtol=1e-5, atol=1e-6)
  model.train()
  assert not np.allclose(model(x)[:4], model(x[:4]), rtol=1e-3, atol=1e-4)


def test_train_mode_updates_batch_stats_eval_does_not():
  x = _images()
  model = _tiny()
  before = _batch_stats(model)
  model.eval()
  model(x)
  _trees_allclose(_batch_stats(model), before, rtol=0, atol=0)
  model.train()
  model(x)
  after = _batch_stats(model)
  assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))


def test_modes_agree_when_running_stats_are_the_batch_stats():
  # bn_momentum=0: one train-mode pass sets every running average to that layer's batch statistic
  # on this batch; eval mode on the same batch then normalises identically, layer by layer.
  x = _images()
  model = _tiny(bn_momentum=0.0)
  model.train()
  h_train = model(x)
  model.eval()
  np.testing.assert_allclose(model(x), h_train, rtol=1e-4, atol=1e-5)


# --- zero_init_residual -------------------------------------------------------------------------

@pytest.mark.parametrize('block', ['basic', 'bottleneck'])
def test_zero_init_residual_blocks_start_as_identity(block):
  model = _tiny(block=block, zero_init_residual=True)
  blocks = [b for stage in model.stages for b in stage]
  assert any(b.shortcut_conv is None for b in blocks) == (block == 'basic')
  assert any(b.shortcut_conv is not None for b in blocks)
  x = jax.nn.relu(model.stem_norm(model.stem_conv(_images(4))))
  for mode in ('train', 'eval'):
    getattr(model, mode)()
    y = x
    for b in blocks:
      np.testing.assert_array_equal(b.last_norm.scale[...], 0.0)
      out = b(y)
      np.testing.assert_allclose(out, jax.nn.relu(b.shortcut(y)), rtol=1e-6, atol=1e-6)
      y = out
  default = _tiny(block=block)
  for b in (b for stage in default.stages for b in stage):
    np.testing.assert_array_equal(b.last_norm.scale[...], 1.0)


# --- BatchNorm over the global batch when sharded ----------------------------------------------

def test_batchnorm_statistics_span_the_global_batch_when_sharded():
  assert len(jax.devices()) == 8
  model = _tiny()
  model.train()
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)

  @jax.jit
  def forward(params, stats, x):
    m = nnx.merge(graphdef, params, stats)
    h = m(x)
    return h, nnx.state(m, nnx.BatchStat)

  x = np.asarray(_images())
  single = jax.devices()[0]
  h1, stats1 = forward(*jax.device_put((params, stats, x), single))

  mesh = Mesh(np.array(jax.devices()), ('data',))
  replicated = NamedSharding(mesh, P())
  x8 = jax.device_put(x, NamedSharding(mesh, P('data')))
  assert len(x8.sharding.device_set) == 8
  h8, stats8 = forward(*jax.device_put((params, stats), replicated), x8)

  np.testing.assert_allclose(h8, h1, rtol=1e-5, atol=1e-6)
  _trees_allclose(nnx.to_pure_dict(stats8), nnx.to_pure_dict(stats1), rtol=1e-5, atol=1e-7)

  # The first BatchNorm by hand: statistics of the stem convolution over all 16 samples.
  y = jax.lax.conv_general_dilated(x, model.stem_conv.kernel[...], (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  mean, var = np.mean(y, axis=(0, 1, 2)), np.var(y, axis=(0, 1, 2))
  momentum = model.stem_norm.momentum   # running averages start at mean 0, var 1
  np.testing.assert_allclose(stats8['stem_norm']['mean'][...], (1 - momentum) * mean,
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(stats8['stem_norm']['var'][...],
                             momentum + (1 - momentum) * var, rtol=1e-5)
  # ... which one device's 2 samples would not have given.
  assert not np.allclose(np.mean(y[:2], axis=(0, 1, 2)), mean, rtol=1e-2)


# --- heads --------------------------------------------------------------------------------------

def test_mlp_head_layers_and_dims():
  rngs = nnx.Rngs(0)
  head = models.MLPHead(16, (32, 24), 8, rngs=rngs)
  assert head(jnp.ones((4, 16))).shape == (4, 8)
  assert [l.bias for l in head.hidden_linears] == [None, None]   # BN's shift replaces the bias
  assert head.output_linear.bias is not None and head.output_norm is None
  no_bn = models.MLPHead(16, (32,), 8, use_bn=False, rngs=rngs)
  assert no_bn.hidden_norms[0] is None and no_bn.hidden_linears[0].bias is not None
  last_bn = models.MLPHead(16, (), 8, last_bn=True, rngs=rngs)
  assert last_bn.output_norm is not None and last_bn.output_linear.bias is None
  assert last_bn(jnp.ones((4, 16))).shape == (4, 8)
  with pytest.raises(ValueError, match='hidden_dims'):
    models.MLPHead(16, (0,), 8, rngs=rngs)


def test_mlp_head_layers():
  rngs = nnx.Rngs(0)
  x = jnp.ones((4, 16))
  two = models.mlp_head(16, num_layers=2, hidden_dim=32, out_dim=8, rngs=rngs)
  assert len(two.hidden_linears) == 1 and two(x).shape == (4, 8)
  three = models.mlp_head(16, num_layers=3, hidden_dim=32, out_dim=24, last_bias=False,
                          rngs=rngs)
  assert len(three.hidden_linears) == 2 and three.output_linear.bias is None
  assert three(x).shape == (4, 24)
  # SimCLR's paper head, counted abstractly: 512 → 2048 → 128 with one BN.
  default = nnx.eval_shape(lambda: models.mlp_head(512, num_layers=2, hidden_dim=2048,
                                                   out_dim=128, rngs=nnx.Rngs(0)))
  assert models.count_params(default) == 512 * 2048 + 2 * 2048 + 2048 * 128 + 128
  # The affine-free last BatchNorm (SimSiam, MoCo v3) has no parameters of its own.
  last_bn = nnx.eval_shape(lambda: models.mlp_head(512, num_layers=2, hidden_dim=2048,
                                                   out_dim=128, last_bn=True, rngs=nnx.Rngs(0)))
  assert models.count_params(last_bn) == 512 * 2048 + 2 * 2048 + 2048 * 128
  with pytest.raises(ValueError, match='num_layers'):
    models.mlp_head(16, num_layers=0, hidden_dim=8, out_dim=8, rngs=rngs)


def test_linear_head_is_the_zero_initialised_linear_classifier():
  head = models.LinearHead(16, 3)
  x = jnp.ones((4, 16))
  np.testing.assert_array_equal(head(x), 0.0)
  params = models.linear_init(16, 3)
  params['kernel'] = params['kernel'].at[0, 1].set(2.0)
  head.kernel[...] = params['kernel']
  np.testing.assert_allclose(head(x), models.linear_logits(params, x))
  loss, accuracy = models.classification_loss(models.linear_logits(params, x),
                                              jnp.array([1, 1, 0, 2]))
  assert float(accuracy) == 0.5 and np.isfinite(float(loss))


# --- encoder and config -------------------------------------------------------------------------

def test_default_model_config_is_simclr_sized_unless_overridden():
  config = models.default_model_config('resnet50', stem='imagenet')
  assert (config.arch, config.stem, config.dtype) == ('resnet50', 'imagenet', 'float32')
  assert (config.projector_layers, config.projector_hidden_dim, config.projection_dim) == (
      2, 2048, 128)
  assert (config.predictor_layers, config.num_prototypes, config.num_classes) == (0, 0, 0)
  byol = models.default_model_config(projection_dim=256, predictor_layers=2)
  assert byol.projection_dim == 256 and byol.predictor_layers == 2
  with pytest.raises(ValueError, match='unknown model field'):
    models.default_model_config(head='byol')


def test_byol_sized_encoder():
  config = models.default_model_config(projector_hidden_dim=4096, projection_dim=256,
                                       predictor_layers=2, predictor_hidden_dim=4096)
  encoder = nnx.eval_shape(lambda: models.build_encoder(config, rngs=nnx.Rngs(0)))
  projector = 512 * 4096 + 2 * 4096 + 4096 * 256 + 256
  predictor = 256 * 4096 + 2 * 4096 + 4096 * 256 + 256
  assert models.count_params(encoder) == PUBLISHED['resnet18', 'cifar'] + projector + predictor


@pytest.mark.parametrize('heads,keys,z_dim', [
    (dict(), 'hz', 8), (dict(predictor_layers=2), 'hzp', 8), (dict(projector_layers=3), 'hz', 8),
    (dict(num_prototypes=10), 'hz', 8), (dict(num_classes=5), ('h', 'logits', 'z'), 8),
    (dict(projector_layers=0), 'hz', 16),
])
def test_build_encoder_each_head(heads, keys, z_dim):
  config = models.default_model_config('resnet_tiny', projector_hidden_dim=32, projection_dim=8,
                                       predictor_hidden_dim=16, **heads)
  encoder = models.build_encoder(config, rngs=nnx.Rngs(0))
  out = encoder(_images(4))
  assert sorted(out) == sorted(keys)
  assert out['h'].shape == (4, 16) and out['z'].shape == (4, z_dim)
  assert encoder.feature_dim == 16 and encoder.projection_dim == z_dim
  assert sorted(encoder.embed(_images(4))) == ['h', 'z']  # what a momentum copy computes
  if 'p' in out:
    assert out['p'].shape == (4, 8)
  if 'logits' in out:
    assert out['logits'].shape == (4, 5)
  if heads.get('num_prototypes'):
    assert encoder.prototypes.shape == (10, 8)
    np.testing.assert_allclose(jnp.linalg.norm(encoder.prototypes[...], axis=1), 1.0, rtol=1e-6)
    out2 = encoder(_images(4, seed=1))
    loss, _ = losses.swav(out['z'], out2['z'], encoder.prototypes[...])
    assert np.isfinite(loss)
  else:
    assert encoder.prototypes is None


@pytest.mark.parametrize('field,value,message', [
    ('arch', 'resnet101', 'resnet18'),
    ('stem', 'tiny', 'imagenet'),
    ('dtype', 'float16', 'bfloat16'),
    ('width_multiplier', 0, 'width_multiplier'),
    ('predictor_hidden_dim', 0, 'predictor_hidden_dim'),
    ('predictor_layers', -1, 'predictor_layers'),
    ('projection_dim', 0, 'projection_dim'),
    ('num_classes', -1, 'num_classes'),
])
def test_build_encoder_rejects_bad_values(field, value, message):
  config = models.default_model_config('resnet_tiny', predictor_layers=2)
  config[field] = value
  with pytest.raises(ValueError, match=message):
    models.build_encoder(config, rngs=nnx.Rngs(0))


def test_bad_names_raise():
  with pytest.raises(ValueError, match='resnet50'):
    models.default_model_config('vit')
  with pytest.raises(ValueError, match='bottleneck'):
    models.ResNet((1,), 'wide', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='cifar'):
    models.resnet_tiny(stem='large', rngs=nnx.Rngs(0))
  swav = models.default_model_config('resnet_tiny')
  swav.num_prototypes = -3
  with pytest.raises(ValueError, match='num_prototypes'):
    models.build_encoder(swav, rngs=nnx.Rngs(0))
