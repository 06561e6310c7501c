"""glf_jax's own weights files: an encoder's parameters and BatchNorm statistics as ``.npz`` or
``.safetensors`` (never pickle), keyed by the ``/``-joined paths of the encoder's variables.

:func:`export_weights` writes one; :func:`load_weights_into` reads one into an encoder of the
same architecture (every entry must match). torchvision state dicts are ``models.torchvision``.
"""

from __future__ import annotations

import io

from flax import nnx
import jax.numpy as jnp
import numpy as np

from glf_jax.runtime import fileio


def _flat_state(state: nnx.State) -> dict[str, np.ndarray]:
  flat = {}
  for path, value in nnx.to_flat_state(state):
    flat['/'.join(str(p) for p in path)] = np.asarray(value.get_value() if hasattr(
        value, 'get_value') else value)
  return flat


def export_weights(encoder_state: nnx.State, path: str) -> None:
  """Writes an encoder's parameters and BatchNorm statistics as ``.npz`` or ``.safetensors``."""
  flat = _flat_state(encoder_state)
  if not path.endswith(('.safetensors', '.npz')):
    raise ValueError(f'weights file must end in .npz or .safetensors, got {path!r}')
  with fileio.atomic_write(path) as f:  # a local path or a URL (gs://)
    if path.endswith('.safetensors'):
      from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
      f.write(save(flat))
    else:
      np.savez(f, **flat)


def load_weights_into(encoder: nnx.Module, path: str) -> None:
  """Loads a ``.npz`` / ``.safetensors`` file into ``encoder`` (every entry must match)."""
  if not fileio.isfile(path):
    raise FileNotFoundError(f'prior.path: no weights file at {path!r}')
  if not path.endswith(('.safetensors', '.npz')):
    raise ValueError(f'prior.path must end in .npz or .safetensors, got {path!r}')
  try:
    data = fileio.read_bytes(path)  # a local path or a URL (gs://)
    if path.endswith('.safetensors'):
      from safetensors.numpy import load  # pylint: disable=g-import-not-at-top
      flat = load(data)
    else:
      with np.load(io.BytesIO(data), allow_pickle=False) as f:
        flat = {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except  # SafetensorError, a bad zip, pickles
    raise ValueError(f'cannot read the weights file {path} ({type(e).__name__}: {e})') from e
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
