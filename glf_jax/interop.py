"""Runs and torchvision weight files: evaluating / fine-tuning a torchvision ResNet, and the
``export`` mode (the weight mapping itself is ``glf_jax.models.torchvision``).

* :func:`load_evaluated_encoder`: what the eval modes (``eval``, ``linear_probe``, ``knn``,
  ``finetune``) load from ``eval.checkpoint_dir``: a run's workdir, as before, or a torchvision
  ResNet-18/34/50 state dict saved as ``.safetensors``. Such a file has no run config, so
  ``eval.data.name`` must name the data; the "run config" is then ``base_config`` of that dataset
  with the file's architecture (no heads) and ImageNet's mean/std as the input normalisation (of
  the evaluation transform and of the view recipes), because torchvision's weights expect it; the
  image size and centre crop are the dataset's.
* :func:`export_run` (``mode=export``): a run's backbone as ``encoder_torchvision.safetensors``
  (a torchvision state dict without ``fc``) and ``encoder_torchvision.json`` (architecture, stem,
  input size and normalisation, source run and step, and for the CIFAR stem what differs from
  ``torchvision.models.resnet*()`` with the torch lines that build the matching module).
"""

from __future__ import annotations

import json
import os
from typing import Any

from flax import nnx
import ml_collections

from glf_jax import checkpoint
from glf_jax import config as config_lib
from glf_jax import fileio
from glf_jax.data import datasets
from glf_jax.models import torchvision as tv

EXPORT_NAME = 'encoder_torchvision'
_FILE_SUFFIXES = ('.safetensors',) + tv.PICKLE_SUFFIXES


def is_weights_file(path: str | None) -> bool:
  """Whether ``eval.checkpoint_dir`` names a weights file (``.safetensors``, or a pickled
  ``.pth`` that :func:`glf_jax.models.torchvision.load_state_dict` refuses with advice)."""
  return bool(path) and str(path).lower().endswith(_FILE_SUFFIXES) and not os.path.isdir(path)


def torchvision_run_config(info: dict[str, Any], dataset: str) -> ml_collections.ConfigDict:
  """The stand-in run config of a torchvision file evaluated on ``dataset`` (module docstring)."""
  config = config_lib.base_config('simclr', dataset, info['arch'])
  config.model = tv.model_config(info)
  for section in (config.eval.transform, config.augment.view1, config.augment.view2):
    section.mean = tuple(datasets.IMAGENET_MEAN)
    section.std = tuple(datasets.IMAGENET_STD)
  return config


def load_evaluated_encoder(config: ml_collections.ConfigDict, source: str):
  """``(run_config, eval_graphdef, params, batch_stats, step)`` of ``source``: a run's workdir
  (:func:`glf_jax.checkpoint.load_encoder`) or a torchvision ``.safetensors`` file (``step``
  None; ``config.eval.data.name`` required)."""
  if not is_weights_file(source):
    return checkpoint.load_encoder(source)
  state_dict = tv.load_state_dict(source)  # refuses .pth with the conversion command
  if config.eval.data.name is None:
    raise ValueError(f'eval.checkpoint_dir {source} is a torchvision weights file, which has no '
                     'run config: set --config.eval.data.name (the dataset to evaluate on)')
  _, eval_graphdef, params, batch_stats, info = tv.encoder_from_torchvision(state_dict)
  run_config = torchvision_run_config(info, config.eval.data.name)
  return run_config, eval_graphdef, params, batch_stats, None


def export_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Writes the backbone of the run in ``eval.checkpoint_dir`` (default: ``workdir``) as a
  torchvision state dict plus its description to ``workdir``; returns the summary."""
  source = os.path.abspath(config.eval.checkpoint_dir or workdir)
  if is_weights_file(source):
    raise ValueError(f'eval.checkpoint_dir {source} is already a weights file; export reads a '
                     'glf_jax run: set --config.eval.checkpoint_dir to its workdir')
  run_config, eval_graphdef, params, batch_stats, step = checkpoint.load_encoder(source)
  m = run_config.model
  if m.arch not in tv.ARCHITECTURES or m.width_multiplier != 1:
    raise ValueError(f'cannot export {source}: its model is {m.arch} with width_multiplier '
                     f'{m.width_multiplier}; only resnet18, resnet34 and resnet50 with '
                     'width_multiplier 1 have a torchvision counterpart')
  encoder = nnx.merge(eval_graphdef, params, batch_stats)
  state_dict = tv.backbone_to_torchvision(encoder)
  info = tv.module_architecture(encoder)
  weights_path = os.path.join(workdir, f'{EXPORT_NAME}.safetensors')
  json_path = os.path.join(workdir, f'{EXPORT_NAME}.json')
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
