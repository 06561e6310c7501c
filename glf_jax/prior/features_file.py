"""Precomputed per-example prior features: a file of rows aligned with a training source.

ADC's LPM (docs/maths.md §3) needs prior features ``f_pre(x)`` of each example. ``prior.kind='features'``
reads them from a file instead of running a prior network in the step, so any model can be the
prior (CLIP, DINOv2, ... computed once, in any framework). Row ``i`` of the file describes example
``i`` of the training source (``source[i]``, ``source.example_ids()[i]``).

Formats (never pickle):

* ``FILE.safetensors``: the tensor ``features`` ``[num_examples, D]`` (float32 or float16) and the
  metadata below in the safetensors header (string to string).
* ``FILE.npy``: the ``[num_examples, D]`` array, with the metadata in ``FILE.npy.json`` beside it.

Metadata: ``format`` (:data:`FORMAT`), ``num_examples``, ``ids_fingerprint`` (sha256 of the
source's example ids, one per line, in order), ``source`` (e.g. ``cifar10/train``), ``dim`` and
free-form ``description`` (what computed the features). :func:`load_for_source` checks length and
fingerprint against the source a run trains on, so a file made for another dataset, split, subset
or file order is refused instead of silently misaligned.

Writing a file from any encoder (e.g. CLIP in a PyTorch environment)::

    from glf_jax.prior import features_file
    from glf_jax.data import make_source, default_data_config
    source = make_source(default_data_config('cifar10'), 'train')   # the run's training source
    rows = [my_encoder(source[i]['image']) for i in range(len(source))]   # uint8 [H, W, 3] each
    features_file.write('clip.safetensors', np.stack(rows), source=source,
                        description='open_clip ViT-B-32 laion2b_s34b_b79k, image embeddings')

``python -m glf_jax.prior`` does this for a glf_jax encoder.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Sequence

import numpy as np

from glf_jax.runtime import fileio

FORMAT = 'glf_jax.prior_features/1'  # the files' format name (not a module path)
EXTENSIONS = ('.safetensors', '.npy')


class PriorFeaturesMismatchError(ValueError):
  """A prior-features file that does not describe the examples of the run's training source."""


def ids_fingerprint(ids: Sequence[str]) -> str:
  """sha256 of the example ids, one per line, in order."""
  digest = hashlib.sha256()
  for example_id in ids:
    digest.update(example_id.encode('utf-8'))
    digest.update(b'\n')
  return digest.hexdigest()


def check_path(path: str) -> None:
  """Refuses a path that is not ``.safetensors`` or ``.npy`` (never pickle)."""
  if not path.endswith(EXTENSIONS):
    raise ValueError(f'prior features file must end in .safetensors or .npy (never pickle), got '
                     f'{path!r}')


def source_metadata(source) -> dict[str, str]:
  """What a features file records about the source its rows are aligned with."""
  ids = source.example_ids()
  return {'num_examples': str(len(ids)), 'ids_fingerprint': ids_fingerprint(ids),
          'source': f'{source.name}/{source.split}'}


def write(path: str, features: np.ndarray, *, source, description: str = '') -> None:
  """Writes ``features [len(source), D]`` (row ``i`` = ``source[i]``) with ``source``'s length and
  id fingerprint. float16 input is kept (half the file); anything else is stored as float32."""
  check_path(path)
  features = np.asarray(features)
  if features.ndim != 2 or features.shape[0] != len(source):
    raise ValueError(f'features must have shape [len(source) = {len(source)}, D], got '
                     f'{features.shape}')
  if not np.all(np.isfinite(features)):
    raise ValueError('features hold NaN or infinite values')
  if features.dtype != np.float16:
    features = features.astype(np.float32)
  metadata = {'format': FORMAT, **source_metadata(source), 'dim': str(features.shape[1]),
              'description': str(description)}
  features = np.ascontiguousarray(features)
  if path.endswith('.safetensors'):
    from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
    with fileio.atomic_write(path) as f:
      f.write(save({'features': features}, metadata=metadata))
  else:
    with fileio.atomic_write(path) as f:
      np.save(f, features, allow_pickle=False)
    with fileio.atomic_write(path + '.json', 'w', encoding='utf-8') as f:
      json.dump(metadata, f, indent=2)


def read(path: str) -> tuple[np.ndarray, dict[str, str]]:
  """``(features [N, D], metadata)`` of a file written by :func:`write` (or by hand, same layout).

  Raises:
    FileNotFoundError: no file (or, for ``.npy``, no metadata file beside it).
    ValueError: an unreadable file (malformed, pickled), another format, or features that are
      not a finite float ``[N, D >= 1]`` array; the message names the file.
  """
  check_path(path)
  if not fileio.isfile(path):
    raise FileNotFoundError(f'prior.path: no prior features file at {path!r}')
  if path.endswith('.safetensors'):
    features, metadata = _read_safetensors(path)
  else:
    try:
      if fileio.is_url(path):  # (gs://) the file's bytes
        features = np.load(io.BytesIO(fileio.read_bytes(path)), allow_pickle=False)
      else:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # malformed, truncated, or pickled objects
      raise ValueError(f'cannot read the prior features file {path} ({type(e).__name__}: {e}); '
                       'write it with glf_jax.prior.features_file.write (never pickle)') from e
    sidecar = path + '.json'
    if not fileio.isfile(sidecar):
      raise FileNotFoundError(f'{path} has no metadata file {sidecar} (num_examples, '
                              'ids_fingerprint); write the file with glf_jax.prior.features_file.write')
    metadata = json.loads(fileio.read_text(sidecar))
  if metadata.get('format') != FORMAT:
    raise ValueError(f'{path}: format {metadata.get("format")!r}, expected {FORMAT!r}; write the '
                     'file with glf_jax.prior.features_file.write')
  if (features.ndim != 2 or features.shape[1] < 1
      or not np.issubdtype(features.dtype, np.floating)):
    raise ValueError(f'{path}: features must be a float [num_examples, D >= 1] array, got '
                     f'{features.dtype} {features.shape}')
  finite = np.isfinite(features).all(axis=1)
  if not finite.all():
    raise ValueError(f'{path}: {int(np.sum(~finite))} of {len(features)} rows of prior features '
                     f'hold NaN or infinite values (the first: row {int(np.argmin(finite))}); '
                     'recompute the features')
  return features, metadata


def _read_safetensors(path: str) -> tuple[np.ndarray, dict[str, str]]:
  """The ``features`` tensor and the header metadata of a ``.safetensors`` file."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load  # pylint: disable=g-import-not-at-top
  try:
    if fileio.is_url(path):  # (gs://) the file's bytes; the metadata from its JSON header
      data = fileio.read_bytes(path)
      header = json.loads(data[8:8 + int.from_bytes(data[:8], 'little')])
      metadata = dict(header.get('__metadata__') or {})
      tensors = load(data)
      names, features = list(tensors), tensors.get('features')
    else:  # a local file: memory-mapped, only the features tensor read
      with safe_open(path, framework='numpy') as f:
        metadata = dict(f.metadata() or {})
        names = list(f.keys())
        features = f.get_tensor('features') if 'features' in names else None
  except Exception as e:  # pylint: disable=broad-except  # SafetensorError, dtypes NumPy lacks
    raise ValueError(f'cannot read the prior features file {path} as safetensors '
                     f'({type(e).__name__}: {e}); write it with '
                     'glf_jax.prior.features_file.write') from e
  if features is None:
    raise ValueError(f'{path} holds no tensor named "features" (it has {names})')
  return features, metadata


def load_for_source(path: str, source) -> np.ndarray:
  """The features of ``path``, checked against ``source`` (length and example-id fingerprint)."""
  features, metadata = read(path)
  expected = source_metadata(source)
  if int(metadata.get('num_examples', -1)) != len(source) or features.shape[0] != len(source):
    raise PriorFeaturesMismatchError(
        f'{path} has features of {features.shape[0]} examples ({metadata.get("source")}), the '
        f'training source {expected["source"]} has {len(source)}; compute the features for this '
        'source (python -m glf_jax.prior)')
  if metadata.get('ids_fingerprint') != expected['ids_fingerprint']:
    raise PriorFeaturesMismatchError(
        f'{path} was computed for other examples or another order ({metadata.get("source")}) than '
        f'the training source {expected["source"]} (example-id fingerprints differ); compute the '
        'features for this source (python -m glf_jax.prior)')
  return features
