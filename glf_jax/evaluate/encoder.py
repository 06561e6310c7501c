"""The encoder an evaluation reads: a glf_jax run's, or a torchvision ResNet weights file's.

* :func:`load_encoder`: the encoder of a run's workdir, rebuilt from its saved ``config.model``
  alone (``nnx.eval_shape``: nothing is allocated before the restore), with only its parameters
  and BatchNorm statistics read from the latest readable checkpoint, read-only (another run's
  directory, possibly still training, is never modified). What evaluation, the checkpoint prior
  and the export mode need.
* :func:`load_evaluated_encoder`: what the eval modes load from ``eval.checkpoint_dir``: a run's
  workdir, or a torchvision ResNet-18/34/50 state dict saved as ``.safetensors``. Such a file has
  no run config, so ``eval.data.name`` must name the data; the stand-in run config
  (:func:`torchvision_run_config`) is then that dataset's data and evaluation transform with the
  file's architecture (no heads) and ImageNet's mean/std as the input normalisation (of the
  evaluation transform and of the view recipes), which torchvision's weights expect; the image
  size and centre crop are the dataset's.
"""

from __future__ import annotations

import json
from typing import Any

from flax import nnx
import jax
import ml_collections

from glf_jax.data import datasets, recipes, sources
from glf_jax.evaluate import common
from glf_jax.models import build_encoder, split_encoder
from glf_jax.models import torchvision as tv
from glf_jax.run import checkpoint
from glf_jax.runtime import fileio

_FILE_SUFFIXES = ('.safetensors',) + tv.PICKLE_SUFFIXES


def load_encoder(workdir: str, *, sharding: jax.sharding.Sharding | None = None):
  """The encoder of an earlier run: ``(config, eval_graphdef, params, batch_stats, step)``.

  Raises:
    FileNotFoundError: ``workdir`` holds no checkpoint.
    CheckpointFormatError: the checkpoint has another layout.
  """
  directory = checkpoint.checkpoint_dir(workdir)
  meta = checkpoint.read_meta(directory)
  if meta is None:
    raise FileNotFoundError(f'no glf_jax checkpoint in {directory} (train a model with '
                            f'mode=pretrain and --workdir={workdir} first)')
  checkpoint.check_format(meta, directory)
  config = ml_collections.ConfigDict(json.loads(meta['config']))
  abstract_encoder = nnx.eval_shape(lambda: build_encoder(config.model, rngs=nnx.Rngs(0)))
  _, eval_graphdef, params, batch_stats = split_encoder(abstract_encoder)
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                          {'params': params, 'batch_stats': batch_stats})
  with checkpoint.Checkpointer(directory, async_save=False, read_only=True) as ckpt:
    step, restored, _, _ = ckpt.restore(abstract, partial=True)
  return config, eval_graphdef, restored['params'], restored['batch_stats'], step


def is_weights_file(path: str | None) -> bool:
  """Whether ``eval.checkpoint_dir`` names a weights file (``.safetensors``, or a pickled
  ``.pth`` that :func:`glf_jax.models.torchvision.load_state_dict` refuses with advice)."""
  return bool(path) and str(path).lower().endswith(_FILE_SUFFIXES) and not fileio.isdir(path)


def torchvision_run_config(info: dict[str, Any], dataset: str) -> ml_collections.ConfigDict:
  """The stand-in run config of a torchvision file evaluated on ``dataset`` (module docstring):
  what an evaluation reads of a run config — ``data``, ``augment``, ``model`` and
  ``eval.transform``."""
  data_info = datasets.dataset_info(dataset)
  imagenet = dict(mean=tuple(datasets.IMAGENET_MEAN), std=tuple(datasets.IMAGENET_STD))
  config = ml_collections.ConfigDict()
  config.data = sources.default_data_config(dataset)
  config.augment = recipes.RECIPES['simclr'].views(data_info.image_size, family=data_info.family,
                                                   **imagenet)
  config.model = tv.model_config(info)
  transform = common.default_transform(data_info)
  transform.update(imagenet)
  config.eval = ml_collections.ConfigDict({'transform': transform})
  return config


def load_evaluated_encoder(config: ml_collections.ConfigDict, source: str):
  """``(run_config, eval_graphdef, params, batch_stats, step)`` of ``source``: a run's workdir
  (:func:`load_encoder`) or a torchvision ``.safetensors`` file (``step`` None;
  ``config.eval.data.name`` required)."""
  if not is_weights_file(source):
    return load_encoder(source)
  state_dict = tv.load_state_dict(source)  # refuses .pth with the conversion command
  if config.eval.data.name is None:
    raise ValueError(f'eval.checkpoint_dir {source} is a torchvision weights file, which has no '
                     'run config: set --config.eval.data.name (the dataset to evaluate on)')
  _, eval_graphdef, params, batch_stats, info = tv.encoder_from_torchvision(state_dict)
  run_config = torchvision_run_config(info, config.eval.data.name)
  return run_config, eval_graphdef, params, batch_stats, None
