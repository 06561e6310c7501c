"""The ``export`` mode: a run's backbone as ``encoder_torchvision.safetensors`` (a torchvision
state dict without ``fc``) and ``encoder_torchvision.json`` (architecture, stem, input size and
normalisation, source run and step, and for the CIFAR stem what differs from
``torchvision.models.resnet*()`` with the torch lines that build the matching module). The weight
mapping itself is ``glf_jax.models.torchvision``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flax import nnx
import ml_collections

from glf_jax.evaluate import encoder as encoder_lib
from glf_jax.models import torchvision as tv
from glf_jax.run import layout
from glf_jax.runtime import fileio

def export_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Writes the backbone of the run in ``eval.checkpoint_dir`` (default: ``workdir``) as a
  torchvision state dict plus its description to ``workdir``; returns the summary."""
  source = fileio.resolve(config.eval.checkpoint_dir or workdir)
  if encoder_lib.is_weights_file(source):
    raise ValueError(f'eval.checkpoint_dir {source} is already a weights file; export reads a '
                     'glf_jax run: set --config.eval.checkpoint_dir to its workdir')
  run_config, eval_graphdef, params, batch_stats, step = encoder_lib.load_encoder(source)
  m = run_config.model
  if m.arch not in tv.ARCHITECTURES or m.width_multiplier != 1:
    raise ValueError(f'cannot export {source}: its model is {m.arch} with width_multiplier '
                     f'{m.width_multiplier}; only resnet18, resnet34 and resnet50 with '
                     'width_multiplier 1 have a torchvision counterpart')
  encoder = nnx.merge(eval_graphdef, params, batch_stats)
  state_dict = tv.backbone_to_torchvision(encoder)
  info = tv.module_architecture(encoder)
  weights_path = layout.path(workdir, f'{layout.EXPORT}.safetensors')
  json_path = layout.path(workdir, f'{layout.EXPORT}.json')
  t = run_config.eval.transform
  filename = os.path.basename(weights_path)
  description = {
      'format': 'torchvision ResNet state_dict (safetensors), without fc.weight/fc.bias',
      'file': filename,
      'architecture': info['arch'],
      'stem': info['stem'],
      'block': info['block'],
      'stage_sizes': list(info['stage_sizes']),
      'feature_dim': info['feature_dim'],
      'input': {
          'image_size': int(t.image_size),
          'crop_fraction': float(t.crop_fraction),
          'range': 'RGB, uint8 / 255 (0..1), then (x - mean) / std per channel; torch: NCHW',
          'mean': [float(v) for v in t.mean],
          'std': [float(v) for v in t.std],
      },
      'source': {'run': source, 'step': int(step), 'objective': run_config.objective.name,
                 'dataset': run_config.data.name},
      'heads': 'not exported (projector, predictor, prototypes, classifier): the file is the '
               'backbone; features = global average pool of layer4',
      'differences_from_torchvision': (
          tv.CIFAR_STEM_NOTE if info['stem'] == 'cifar' else
          f'none in the layers: torchvision.models.{info["arch"]}() with fc = nn.Identity()'),
      'torch': tv.torch_snippet(info, filename),
  }
  tv.save_state_dict(state_dict, weights_path)
  with fileio.atomic_write(json_path, 'w', encoding='utf-8') as f:
    json.dump(description, f, indent=2)
  print(f'exported {info["arch"]} ({info["stem"]} stem) of {source} at step {step} to '
        f'{weights_path} and {json_path}', flush=True)
  return {'mode': 'export', 'checkpoint_dir': source, 'step': int(step),
          'arch': info['arch'], 'stem': info['stem'], 'weights': weights_path,
          'description': json_path}
