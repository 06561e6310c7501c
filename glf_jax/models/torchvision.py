"""torchvision ResNet-18/34/50 weights in and out of this package's ResNet (no PyTorch needed).

A torchvision ``state_dict`` is a flat dict of arrays, read and written here as ``.safetensors``
only (``safetensors.numpy``; pickled ``.pth`` / ``.pt`` files are refused, with the two lines of
torch that convert one). Keys and how they map onto :class:`glf_jax.models.resnet.ResNet`::

    conv1.weight                          stem_conv/kernel        OIHW <-> HWIO
    bn1.{weight,bias,running_mean,running_var}
                                          stem_norm/{scale,bias,mean,var}
    layer{i+1}.{j}.conv{k}.weight         stages/i/j/conv{k}/kernel
    layer{i+1}.{j}.bn{k}.*                stages/i/j/norm{k}/*
    layer{i+1}.{j}.downsample.0.weight    stages/i/j/shortcut_conv/kernel
    layer{i+1}.{j}.downsample.1.*         stages/i/j/shortcut_norm/*
    *.num_batches_tracked                 ignored on import; written as int64 0 on export
    fc.{weight,bias}                      ignored on import; not written on export

Both are ResNet v1.5 (a bottleneck strides in its 3×3 convolution), with PyTorch's symmetric
padding, BatchNorm epsilon 1e-5, so the same weights compute the same features (the tests check
it against an independent NumPy forward). The architecture is read from the weights
(:func:`infer_architecture`): ResNet-18 / 34 / 50 by the blocks per stage and the bottleneck's
``conv3``; the stem by ``conv1``'s kernel (7×7: torchvision's; 3×3: this package's CIFAR stem,
which torchvision builds with ``conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)`` and
``maxpool = nn.Identity()``). Anything else (ResNet-101/152, wide ResNets, ResNeXt, missing or
extra keys, a wrong shape) is a one-line ``ValueError`` naming the keys.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from glf_jax.runtime import fileio
from glf_jax.models.encoder import Encoder, build_encoder, default_model_config, split_encoder
from glf_jax.models.resnet import ResNet

# arch -> (blocks per stage, block); torchvision's resnet18/34/50 (base width 64).
ARCHITECTURES = {
    'resnet18': ((2, 2, 2, 2), 'basic'),
    'resnet34': ((3, 4, 6, 3), 'basic'),
    'resnet50': ((3, 4, 6, 3), 'bottleneck'),
}
WIDTH = 64
STEM_KERNELS = {7: 'imagenet', 3: 'cifar'}
_BN_TORCH = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}
_IGNORED = ('fc.weight', 'fc.bias')
PICKLE_SUFFIXES = ('.pth', '.pt', '.pkl', '.pickle', '.bin', '.tar', '.ckpt')

# What torchvision's resnet*() needs changed to hold a CIFAR-stem export.
CIFAR_STEM_NOTE = ('conv1 is a 3x3 convolution with stride 1 and padding 1 (torchvision: 7x7, '
                   'stride 2, padding 3) and there is no max-pool (torchvision: 3x3, stride 2, '
                   'padding 1): set m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False) and '
                   'm.maxpool = nn.Identity()')


def convert_command(path: str) -> str:
  """The two lines of torch that turn a pickled state dict into ``.safetensors``."""
  out = os.path.splitext(path)[0] + '.safetensors'
  return (f"import torch; from safetensors.torch import save_file; "
          f"save_file({{k: v.contiguous() for k, v in torch.load({path!r}, map_location='cpu', "
          f"weights_only=True).items()}}, {out!r})")


def _layout(arch: str) -> list[tuple[str, tuple, str, tuple[int, ...]]]:
  """``(torch prefix, our module path, 'conv' | 'bn', torch shape)`` of every layer of ``arch``
  (the stem conv's shape with a 0 kernel side: it depends on the stem)."""
  stage_sizes, block = ARCHITECTURES[arch]
  expansion = 4 if block == 'bottleneck' else 1
  layers = [('conv1', ('stem_conv',), 'conv', (WIDTH, 3, 0, 0)),
            ('bn1', ('stem_norm',), 'bn', (WIDTH,))]
  in_features = WIDTH
  for i, num_blocks in enumerate(stage_sizes):
    filters = WIDTH * 2**i
    out_features = filters * expansion
    for j in range(num_blocks):
      prefix, path = f'layer{i + 1}.{j}', ('stages', i, j)
      if block == 'basic':
        convs = [(in_features, 3), (filters, 3)]
        widths = [filters, out_features]
      else:
        convs = [(in_features, 1), (filters, 3), (filters, 1)]
        widths = [filters, filters, out_features]
      for k, ((fan_in, side), width) in enumerate(zip(convs, widths), start=1):
        layers.append((f'{prefix}.conv{k}', path + (f'conv{k}',), 'conv',
                       (width, fan_in, side, side)))
        layers.append((f'{prefix}.bn{k}', path + (f'norm{k}',), 'bn', (width,)))
      strides = 2 if i > 0 and j == 0 else 1
      if strides != 1 or in_features != out_features:
        layers.append((f'{prefix}.downsample.0', path + ('shortcut_conv',), 'conv',
                       (out_features, in_features, 1, 1)))
        layers.append((f'{prefix}.downsample.1', path + ('shortcut_norm',), 'bn', (out_features,)))
      in_features = out_features
  return layers


def _expected_shapes(arch: str, stem: str) -> dict[str, tuple[int, ...]]:
  """Every torchvision key of ``arch`` with ``stem`` (no ``fc``, no ``num_batches_tracked``)."""
  side = 7 if stem == 'imagenet' else 3
  shapes = {}
  for prefix, _, kind, shape in _layout(arch):
    if kind == 'conv':
      shapes[f'{prefix}.weight'] = (shape[0], shape[1], side, side) if prefix == 'conv1' else shape
    else:
      for name in _BN_TORCH:
        shapes[f'{prefix}.{name}'] = shape
  return shapes


def _names(keys, limit: int = 6) -> str:
  keys = sorted(keys)
  return ', '.join(keys[:limit]) + (f' and {len(keys) - limit} more' if len(keys) > limit else '')


def _feature_dim(arch: str) -> int:
  stage_sizes, block = ARCHITECTURES[arch]
  return WIDTH * 2**(len(stage_sizes) - 1) * (4 if block == 'bottleneck' else 1)


def _info(arch: str, stem: str) -> dict[str, Any]:
  stage_sizes, block = ARCHITECTURES[arch]
  return dict(arch=arch, stem=stem, block=block, stage_sizes=stage_sizes, width_multiplier=1,
              feature_dim=_feature_dim(arch))


def infer_architecture(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """``{arch, stem, block, stage_sizes, width_multiplier, feature_dim}`` of a torchvision ResNet
  state dict, after checking every key and shape.

  Raises:
    ValueError: (one line) not a torchvision ResNet-18/34/50 with a 7×7 or 3×3 stem, or missing,
      unexpected or wrongly shaped entries (named).
  """
  keys = set(state_dict)
  if 'conv1.weight' not in keys:
    hint = ''
    if any(k.startswith('module.') for k in keys):
      hint = " (the keys start with 'module.': strip that prefix, it comes from DataParallel)"
    elif any(k.startswith(('backbone.', 'encoder.', 'model.')) for k in keys):
      hint = (' (the keys carry a prefix such as backbone./encoder./model.: save the ResNet\'s '
              'own state_dict)')
    raise ValueError(f'not a torchvision ResNet state dict: no conv1.weight{hint}; first keys: '
                     f'{_names(keys, 4)}')
  conv1 = tuple(np.shape(state_dict['conv1.weight']))
  if (len(conv1) != 4 or conv1[:2] != (WIDTH, 3) or conv1[2] != conv1[3]
      or conv1[2] not in STEM_KERNELS):
    raise ValueError(f'conv1.weight has shape {conv1}; a torchvision ResNet-18/34/50 has '
                     f'({WIDTH}, 3, 7, 7) (or ({WIDTH}, 3, 3, 3) for the CIFAR stem)')
  stem = STEM_KERNELS[conv1[2]]
  blocks: dict[int, set[int]] = {}
  for key in keys:
    match = re.match(r'layer(\d+)\.(\d+)\.', key)
    if match:
      blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
  counts = tuple(max(blocks[i]) + 1 for i in sorted(blocks))
  block = 'bottleneck' if 'layer1.0.conv3.weight' in keys else 'basic'
  arch = next((name for name, (sizes, kind) in ARCHITECTURES.items()
               if sizes == counts and kind == block and sorted(blocks) == [1, 2, 3, 4]), None)
  if arch is None:
    raise ValueError(f'the state dict has {block} blocks per stage {list(counts)} (stages '
                     f'{sorted(blocks)}); supported are only torchvision resnet18 [2, 2, 2, 2] '
                     'basic, resnet34 [3, 4, 6, 3] basic and resnet50 [3, 4, 6, 3] bottleneck '
                     '(not ResNet-101/152)')
  expected = _expected_shapes(arch, stem)
  bn_prefixes = {p for p, _, kind, _ in _layout(arch) if kind == 'bn'}
  optional = set(_IGNORED) | {f'{p}.num_batches_tracked' for p in bn_prefixes}
  missing = set(expected) - keys
  unexpected = keys - set(expected) - optional
  if missing or unexpected:
    raise ValueError(f'the state dict does not match torchvision {arch}: missing '
                     f'[{_names(missing)}], unexpected [{_names(unexpected)}]')
  wrong = [f'{k} {tuple(np.shape(state_dict[k]))} (needs {shape})'
           for k, shape in expected.items() if tuple(np.shape(state_dict[k])) != shape]
  if wrong:
    variant = (' (a wide ResNet or ResNeXt is not supported)'
               if block == 'bottleneck' else '')
    raise ValueError(f'wrong shapes for torchvision {arch}{variant}: {"; ".join(wrong[:4])}'
                     f'{f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""}')
  return _info(arch, stem)


def module_architecture(backbone: nnx.Module) -> dict[str, Any]:
  """:func:`infer_architecture`'s dict for one of our backbones (or an encoder's backbone).

  Raises:
    ValueError: the backbone has no torchvision counterpart (another depth or stage count, a
      width multiplier, fewer filters).
  """
  if isinstance(backbone, Encoder):
    backbone = backbone.backbone
  if not isinstance(backbone, ResNet):
    raise ValueError(f'expected a glf_jax ResNet backbone, got {type(backbone).__name__}')
  sizes, block = backbone.stage_sizes, backbone.block
  width = backbone.stem_conv.out_features
  arch = next((name for name, spec in ARCHITECTURES.items() if spec == (sizes, block)), None)
  if arch is None or width != WIDTH:
    raise ValueError(f'this ResNet ({block} blocks per stage {list(sizes)}, {width} stem filters) '
                     'is not a torchvision resnet18/34/50: only model.arch resnet18, resnet34 or '
                     'resnet50 with model.width_multiplier=1 can be exported')
  return _info(arch, backbone.stem)


def model_config(info: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """The ``config.model`` of a torchvision ResNet: its backbone and no head (``z = h``)."""
  return default_model_config(info['arch'], stem=info['stem'], projector_layers=0)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """A torchvision state dict from a ``.safetensors`` file (NumPy arrays); never unpickles.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: a pickled PyTorch file (the message gives the conversion) or another format.
  """
  path = os.fspath(path)
  lower = path.lower()
  if lower.endswith(PICKLE_SUFFIXES):
    raise ValueError(f'{path} is a pickled PyTorch file, which glf_jax does not read (unpickling '
                     f'can run arbitrary code); convert it once with torch: '
                     f'{convert_command(path)}')
  if not lower.endswith('.safetensors'):
    raise ValueError(f'a torchvision state dict must be a .safetensors file, got {path!r}')
  if not fileio.isfile(path):
    raise FileNotFoundError(f'no torchvision weights file at {path!r}')
  from safetensors.numpy import load  # pylint: disable=g-import-not-at-top
  try:
    return dict(load(fileio.read_bytes(path)))  # a local path or a URL (gs://)
  except Exception as e:  # pylint: disable=broad-except  # e.g. bfloat16, which NumPy lacks
    raise ValueError(f'cannot read {path} as a NumPy safetensors file ({type(e).__name__}: {e}); '
                     'save it from torch in float32: {k: v.float().contiguous() ...}') from e


def save_state_dict(state_dict: Mapping[str, np.ndarray], path: str) -> None:
  """Writes ``state_dict`` as ``.safetensors``, atomically (``glf_jax.runtime.fileio.atomic_write``)."""
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
  if not os.fspath(path).endswith('.safetensors'):
    raise ValueError(f'the output must be a .safetensors file, got {path!r}')
  data = save({k: np.array(v, order='C') for k, v in state_dict.items()},
              metadata={'format': 'pt'})
  with fileio.atomic_write(path) as f:
    f.write(data)


def _to_ours(state_dict: Mapping[str, Any], arch: str) -> dict[tuple, np.ndarray]:
  """Our backbone's ``{path: array}`` (Params and BatchStats) from a checked state dict."""
  flat = {}
  for prefix, path, kind, _ in _layout(arch):
    if kind == 'conv':
      flat[path + ('kernel',)] = np.asarray(state_dict[f'{prefix}.weight']).transpose(2, 3, 1, 0)
    else:
      for torch_name, name in _BN_TORCH.items():
        flat[path + (name,)] = np.asarray(state_dict[f'{prefix}.{torch_name}'])
  return flat


def _fill(state: nnx.State, flat: Mapping[tuple, np.ndarray], prefix: tuple) -> nnx.State:
  """``state`` (concrete or abstract) with every leaf under ``prefix`` replaced from ``flat``."""
  items = []
  for path, variable in nnx.to_flat_state(state):
    path = tuple(path)
    if path[:len(prefix)] == prefix:
      key = path[len(prefix):]
      current = variable.get_value()
      if key not in flat:
        raise ValueError(f'no torchvision entry for backbone variable {"/".join(map(str, key))}')
      value = flat[key]
      if tuple(value.shape) != tuple(current.shape):
        raise ValueError(f'backbone variable {"/".join(map(str, key))} has shape '
                         f'{tuple(current.shape)}, the torchvision entry {tuple(value.shape)}')
      variable = variable.replace(jnp.asarray(value, current.dtype))
    items.append((path, variable))
  return nnx.from_flat_state(items)


def load_torchvision_into(module: nnx.Module, state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Loads a torchvision state dict into a ResNet backbone, or an encoder's backbone, in place.

  Returns the architecture dict; ValueError when the module's architecture (depth, stem) differs.
  """
  info = infer_architecture(state_dict)
  backbone = module.backbone if isinstance(module, Encoder) else module
  ours = module_architecture(backbone)
  if (ours['arch'], ours['stem']) != (info['arch'], info['stem']):
    raise ValueError(f'the state dict is torchvision {info["arch"]} with the {info["stem"]} stem, '
                     f'the module a {ours["arch"]} with the {ours["stem"]} stem')
  flat = _to_ours(state_dict, info['arch'])
  state = nnx.state(backbone, nnx.Any(nnx.Param, nnx.BatchStat))
  nnx.update(backbone, _fill(state, flat, ()))
  return info


def backbone_from_torchvision(state_dict: Mapping[str, Any], *,
                              dtype: Any = jnp.float32) -> ResNet:
  """A new ResNet backbone (train mode, as modules start) holding a torchvision state dict."""
  info = infer_architecture(state_dict)
  backbone = nnx.eval_shape(lambda: ResNet(info['stage_sizes'], info['block'], stem=info['stem'],
                                           dtype=dtype, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(backbone)
  return nnx.merge(graphdef, _fill(state, _to_ours(state_dict, info['arch']), ()))


def encoder_from_torchvision(state_dict: Mapping[str, Any], *, sharding=None):
  """The encoder of a torchvision state dict: ``(model_config, eval_graphdef, params,
  batch_stats, info)``, as :func:`glf_jax.evaluate.encoder.load_encoder` gives for a run.

  The model config is :func:`model_config` (backbone only, ``z = h``); nothing is randomly
  initialised. ``sharding``: where to place the arrays (default: JAX's default device).
  """
  info = infer_architecture(state_dict)
  config = model_config(info)
  abstract = nnx.eval_shape(lambda: build_encoder(config, rngs=nnx.Rngs(0)))
  _, eval_graphdef, params, batch_stats = split_encoder(abstract)
  flat = _to_ours(state_dict, info['arch'])
  params = _fill(params, flat, ('backbone',))
  batch_stats = _fill(batch_stats, flat, ('backbone',))
  if sharding is not None:
    params, batch_stats = jax.device_put((params, batch_stats), sharding)
  return config, eval_graphdef, params, batch_stats, info


def encoder_module_from_torchvision(state_dict: Mapping[str, Any]) -> Encoder:
  """An eval-mode :class:`Encoder` (no heads) holding a torchvision state dict."""
  _, eval_graphdef, params, batch_stats, _ = encoder_from_torchvision(state_dict)
  return nnx.merge(eval_graphdef, params, batch_stats)


def backbone_to_torchvision(module: nnx.Module) -> dict[str, np.ndarray]:
  """The torchvision state dict (float32, NumPy; no ``fc``) of a ResNet backbone or encoder.

  ``num_batches_tracked`` is written as int64 0, so torch's ``load_state_dict(strict=True)``
  accepts the dict once ``m.fc = nn.Identity()``.

  Raises:
    ValueError: the backbone is not a torchvision resnet18/34/50 (see :func:`module_architecture`).
  """
  backbone = module.backbone if isinstance(module, Encoder) else module
  info = module_architecture(backbone)
  flat = {tuple(path): np.asarray(variable.get_value()) for path, variable in
          nnx.to_flat_state(nnx.state(backbone, nnx.Any(nnx.Param, nnx.BatchStat)))}
  out = {}
  for prefix, path, kind, _ in _layout(info['arch']):
    if kind == 'conv':
      out[f'{prefix}.weight'] = flat[path + ('kernel',)].astype(np.float32).transpose(3, 2, 0, 1)
    else:
      for torch_name, name in _BN_TORCH.items():
        out[f'{prefix}.{torch_name}'] = flat[path + (name,)].astype(np.float32)
      out[f'{prefix}.num_batches_tracked'] = np.zeros((), np.int64)
  out = {k: np.array(v, order='C') for k, v in out.items()}
  infer_architecture(out)  # the exact key set and shapes torchvision has
  return out


def torch_snippet(info: Mapping[str, Any], filename: str) -> list[str]:
  """Lines of torch code that build the matching torchvision module and load the file."""
  lines = ['import torch.nn as nn, torchvision',
           'from safetensors.torch import load_file',
           f'state = load_file({filename!r})',
           f'm = torchvision.models.{info["arch"]}()']
  if info['stem'] == 'cifar':
    lines += ['m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)', 'm.maxpool = nn.Identity()']
  lines += ['m.fc = nn.Identity()  # the file has no classifier; m(x) returns the features',
            'm.load_state_dict(state)  # strict: every key matches once fc is Identity',
            'm.eval()']
  return lines


def imagenet_renormaliser(view1: Mapping[str, Any], view2: Mapping[str, Any]):
  """``views -> views`` re-normalised from the views' ``mean``/``std`` to ImageNet's, the
  statistics torchvision's weights expect (pixels in [0, 1] before normalising).

  Raises:
    ValueError: the two views are normalised differently (one map cannot undo both).
  """
  # pylint: disable-next=g-import-not-at-top
  from glf_jax.data.datasets import IMAGENET_MEAN, IMAGENET_STD
  mean, std = tuple(view1['mean']), tuple(view1['std'])
  if (mean, std) != (tuple(view2['mean']), tuple(view2['std'])):
    raise ValueError('augment.view1 and augment.view2 have different mean/std; a torchvision '
                     'prior needs one normalisation of both views to undo')
  scale = jnp.asarray(std, jnp.float32) / jnp.asarray(IMAGENET_STD, jnp.float32)
  shift = (jnp.asarray(mean, jnp.float32) - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(
      IMAGENET_STD, jnp.float32)

  def renormalise(views):
    # (v * std + mean - imagenet_mean) / imagenet_std
    return views.astype(jnp.float32) * scale + shift
  return renormalise
