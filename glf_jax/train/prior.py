"""ADC's frozen prior encoders ``f_pre`` (SPEC §3, LPM), chosen by ``config.prior.kind``.

* ``pixels``: the input space itself, the paper's "identity" prior: each view, optionally resized
  to ``pixel_size``, flattened.
* ``random``: a frozen, randomly initialised encoder of ``config.model``'s architecture (seed
  ``prior.seed``): a control.
* ``checkpoint``: the encoder of an earlier glf_jax run (``prior.path`` = its workdir or its
  checkpoint directory); its architecture comes from that run's saved config.
* ``weights``: parameters for ``config.model``'s architecture from a ``.npz`` or
  ``.safetensors`` file (``prior.path``), keys = the ``/``-joined paths of the encoder's
  parameters and BatchNorm statistics (what :func:`export_weights` writes). Never pickle.
* ``torchvision``: a torchvision ResNet-18/34/50 ``state_dict`` saved as ``.safetensors``
  (``prior.path``; ``glf_jax.models.torchvision``); the architecture comes from the file, not from
  ``config.model``; ``prior.feature`` must be ``'h'`` (no projector). The views are re-normalised
  from the run's mean/std to ImageNet's, which torchvision's weights expect.
* ``features``: precomputed per-example features (``prior.path``, a ``glf_jax.prior_features``
  file, e.g. CLIP's), checked against the training source and gathered on the device by the
  batch's example ``index``. Our reading of SPEC §3 for a per-image file: the prior describes the
  image, not its augmentation, so both views of example ``i`` get its clean-image row ``i``.

A prior is ``(apply_fn, prior_state)``: ``apply_fn(prior_state, views, batch=None) -> features
[2B, d]`` (``views``: both views stacked, ``batch``: the step's batch) is pure and runs in eval
mode (BatchNorm running statistics) under ``stop_gradient``; the state is
passed to the train step as an argument, never updated and never checkpointed (it is rebuilt from
the config on resume, identically).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
from ml_collections import config_dict
import numpy as np

from glf_jax import checkpoint
from glf_jax import prior_features
from glf_jax.models import build_encoder

PRIOR_KINDS = ('pixels', 'random', 'checkpoint', 'weights', 'features', 'torchvision')
PRIOR_FEATURES = ('h', 'z')


def default_prior_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      kind='pixels',      # pixels | random | checkpoint | weights | features | torchvision
      path=config_dict.placeholder(str),  # checkpoint: a workdir; weights: a weights file
      pixel_size=config_dict.placeholder(int),  # pixels: resize each view to this side first
      feature='h',        # encoder priors: backbone feature 'h' or projection 'z'
      seed=1,             # random: initialisation seed
  ))


def _flat_state(state: nnx.State) -> dict[str, np.ndarray]:
  flat = {}
  for path, value in nnx.to_flat_state(state):
    flat['/'.join(str(p) for p in path)] = np.asarray(value.get_value() if hasattr(
        value, 'get_value') else value)
  return flat


def export_weights(encoder_state: nnx.State, path: str) -> None:
  """Writes an encoder's parameters and BatchNorm statistics as ``.npz`` or ``.safetensors``."""
  flat = _flat_state(encoder_state)
  if path.endswith('.safetensors'):
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file(flat, path)
  elif path.endswith('.npz'):
    np.savez(path, **flat)
  else:
    raise ValueError(f'weights file must end in .npz or .safetensors, got {path!r}')


def load_weights_into(encoder: nnx.Module, path: str) -> None:
  """Loads a ``.npz`` / ``.safetensors`` file into ``encoder`` (every entry must match)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'prior.path: no weights file at {path!r}')
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    flat = load_file(path)
  elif path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as f:
      flat = {k: f[k] for k in f.files}
  else:
    raise ValueError(f'prior.path must end in .npz or .safetensors, got {path!r}')
  state = nnx.state(encoder, nnx.Any(nnx.Param, nnx.BatchStat))
  expected = _flat_state(state)
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  if missing or unexpected:
    raise ValueError(f'weights file {path} does not match the architecture: missing '
                     f'{missing[:5]}{"..." if len(missing) > 5 else ""}, unexpected '
                     f'{unexpected[:5]}{"..." if len(unexpected) > 5 else ""}')
  for key, value in expected.items():
    if flat[key].shape != value.shape:
      raise ValueError(f'weights file {path}: {key} has shape {flat[key].shape}, the '
                       f'architecture needs {value.shape}')
  leaves = {tuple(k.split('/')): v for k, v in flat.items()}

  def replace(path, variable):
    key = tuple(str(p) for p in path)
    return variable.replace(jnp.asarray(leaves[key], variable.get_value().dtype))
  flat_state = nnx.to_flat_state(state)
  new = nnx.from_flat_state([(p, replace(p, v)) for p, v in flat_state])
  nnx.update(encoder, new)


def _encoder_prior(encoder: nnx.Module, feature: str):
  encoder.eval()
  graphdef, state = nnx.split(encoder)

  def apply_fn(prior_state, views, batch=None):
    del batch
    out = nnx.merge(graphdef, prior_state)(views)
    return jax.lax.stop_gradient(out[feature].astype(jnp.float32))
  return apply_fn, state


def _restore_encoder(workdir: str) -> nnx.Module:
  _, eval_graphdef, params, batch_stats, _ = checkpoint.load_encoder(workdir)
  return nnx.merge(eval_graphdef, params, batch_stats)


def _features_prior(path: str, source):
  if source is None:
    raise ValueError('prior.kind=features needs the training source to check the file against')
  table = prior_features.load_for_source(path, source)

  def lookup(prior_state, views, batch=None):
    del views
    if batch is None or 'index' not in batch:
      raise ValueError("prior.kind=features needs the batch's example 'index'")
    rows = prior_state['features'][batch['index']].astype(jnp.float32)
    return jnp.concatenate([rows, rows])  # both views: the clean image's features
  return lookup, {'features': jnp.asarray(table)}


def build_prior(config: ml_collections.ConfigDict, objective, source=None
                ) -> tuple[Callable[..., jax.Array] | None, Any]:
  """``(apply_fn, prior_state)`` for ``config.prior`` (see the module docstring).

  ``source``: the training source (``prior.kind='features'`` checks its file against it).

  ``(None, {})`` when the objective reads no prior features (``'prior1' not in objective.needs``:
  no constraint with a prior, or ADC's DCM alone, ``υ = 0``).
  """
  if 'prior1' not in objective.needs:
    return None, {}
  c = config.prior
  if c.kind not in PRIOR_KINDS:
    raise ValueError(f'prior.kind must be one of {list(PRIOR_KINDS)}, got {c.kind!r}')
  if c.feature not in PRIOR_FEATURES:
    raise ValueError(f'prior.feature must be one of {list(PRIOR_FEATURES)}, got {c.feature!r}')
  if c.kind == 'pixels':
    size = c.pixel_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
      raise ValueError(f'prior.pixel_size must be an int >= 1 or None (keep the size), got '
                       f'{size!r}')

    def pixels(prior_state, views, batch=None):
      del prior_state, batch
      x = views.astype(jnp.float32)
      if size and size != x.shape[1]:
        x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear')
      return x.reshape(x.shape[0], -1)
    return pixels, {}
  if c.kind == 'random':
    return _encoder_prior(build_encoder(config.model, rngs=nnx.Rngs(int(c.seed))), c.feature)
  if not c.path:
    raise ValueError(f'prior.path must be set for prior.kind={c.kind!r}')
  if c.kind == 'features':
    return _features_prior(c.path, source)
  if c.kind == 'torchvision':
    from glf_jax.models import torchvision as tv  # pylint: disable=g-import-not-at-top
    if c.feature != 'h':
      raise ValueError(f"prior.feature must be 'h' for prior.kind='torchvision' (the file holds a "
                       f"backbone, no projector), got {c.feature!r}")
    tv_apply, tv_state = _encoder_prior(
        tv.encoder_module_from_torchvision(tv.load_state_dict(c.path)), 'h')
    to_imagenet = tv.imagenet_renormaliser(config.augment.view1, config.augment.view2)

    def torchvision_prior(prior_state, views, batch=None):
      del batch
      return tv_apply(prior_state, to_imagenet(views))
    return torchvision_prior, tv_state
  if c.kind == 'weights':
    encoder = build_encoder(config.model, rngs=nnx.Rngs(0))
    load_weights_into(encoder, c.path)
    return _encoder_prior(encoder, c.feature)
  return _encoder_prior(_restore_encoder(c.path), c.feature)

