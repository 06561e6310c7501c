"""A study's finished cells as small files that travel: ``<cells_dir>/<cell>/seed<k>.json``.

With ``study.cells_dir`` set (one folder, or several comma-separated), the runner writes a record
of every (cell, seed) it finishes into the first folder, and treats a (cell, seed) recorded in any
of them as done (after checking that the record was run with the settings the study gives it
now); aggregation reads the records. A study can then be spread over machines, sessions or a
SLURM array, each committing its records (e.g. ``studies/results/<study>/cells``), and be
aggregated anywhere from the records alone, with no run directory.

A record (JSON, ``format`` :data:`FORMAT`) holds the cell, the seed and its mode; the run's
config (to check a re-run against); its metrics, flat: the pretrained encoder's under their own
names (``linear/top1``), the baselines' prefixed (``random_init/linear/top1``,
``raw_pixels/linear/top1``), a cohort's last tracked values (``pair/cl-nscl/cka_h``), and
``train_seconds``; a cohort's tracks (every tracked step); and the machine that ran it (host,
CPU, cores, platform, Python, jax and jaxlib versions, the glf_jax commit).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import subprocess
from typing import Any

import jax
import ml_collections

from glf_jax.run import layout
from glf_jax.run import metrics_log
from glf_jax.run import saved_config
from glf_jax.runtime import fileio

FORMAT = 'glf_jax.study_cell/1'
# Keys whose values are paths on the machine that ran a cell: a record made elsewhere may differ.
MACHINE_PATHS = ('data.root', 'data.data_dir', 'data.cache_dir', 'prior.path', 'eval.checkpoint_dir',
                 'eval.data.root', 'eval.data.data_dir', 'eval.data.cache_dir')
# Where a summary keeps each evaluated encoder's metrics, and the prefix they get in a record.
_COLUMNS = (('pretrained', ''), ('random_init', 'random_init/'), ('raw_pixels', 'raw_pixels/'))
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def folders(cells_dir: str | None) -> list[str]:
  """``study.cells_dir`` as a list of folders (the first is where records are written)."""
  return [part.strip() for part in (cells_dir or '').split(',') if part.strip()]


def record_path(folder: str, cell: str, seed: int) -> str:
  return fileio.join(folder, cell, f'seed{seed}.json')


def _commit() -> str | None:
  """The glf_jax checkout's commit (with ``+dirty`` when its tracked files changed), if any."""
  try:
    head = subprocess.run(['git', '-C', _REPO, 'rev-parse', 'HEAD'], capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', _REPO, 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ('+dirty' if dirty else '')


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
  """What ran a cell: the numbers of a run are repeatable on one machine, not across them."""
  import jaxlib  # pylint: disable=g-import-not-at-top
  return {'host': socket.gethostname(), 'cpu': _cpu_model(), 'cores': os.cpu_count(),
          'platform': platform.platform(), 'python': platform.python_version(),
          'jax': jax.__version__, 'jaxlib': jaxlib.__version__,
          'devices': [str(d) for d in jax.local_devices()], 'glf_jax_commit': _commit()}


def flat_metrics(summary: dict) -> dict[str, float]:
  """A run's or a cohort's summary as a record's flat metrics (see the module docstring)."""
  out = {}
  for key, prefix in _COLUMNS:
    for name, value in (summary.get(key) or {}).items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix + name] = float(value)
  for name, value in (summary.get('metrics') or {}).items():  # a cohort's last tracked values
    if isinstance(value, (int, float)) and not isinstance(value, bool) and name != 'step':
      out[name] = float(value)
  return out


def make_record(study_name: str, cell, seed: int, run_config: ml_collections.ConfigDict,
                summary: dict, run_dir: str) -> dict[str, Any]:
  """The record of a finished (cell, seed) whose run lives in ``run_dir``."""
  tracks = [{k: v for k, v in r.items() if k != 'wall_time'}
            for r in metrics_log.read(layout.path(run_dir, layout.TRACKS_LOG))]
  return {
      'format': FORMAT, 'study': study_name, 'cell': cell.name, 'seed': int(seed),
      'mode': cell.mode, 'status': summary.get('status'),
      'metrics': flat_metrics(summary),
      'train_seconds': summary.get('train_seconds'),
      'images_per_second': summary.get('images_per_second'),
      'tracks': tracks,
      'config': json.loads(saved_config.to_json(run_config)),
      'machine': machine(),
      'recorded': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }


def write(folder: str, record: dict) -> str:
  path = record_path(folder, record['cell'], record['seed'])
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=1, sort_keys=True, default=float)
    f.write('\n')
  return path


def read_all(cells_dir: str | None) -> dict[tuple[str, int], dict]:
  """Every record in the folders of ``cells_dir``, by (cell, seed). A (cell, seed) recorded in
  two folders (two machines ran it) is refused: keep one."""
  found: dict[tuple[str, int], dict] = {}
  where: dict[tuple[str, int], str] = {}
  for folder in folders(cells_dir):
    if not fileio.isdir(folder):
      continue
    for cell_name in sorted(fileio.listdir(folder)):
      cell_folder = fileio.join(folder, cell_name)
      if not fileio.isdir(cell_folder):
        continue
      for name in sorted(fileio.listdir(cell_folder)):
        if not (name.startswith('seed') and name.endswith('.json')):
          continue
        path = fileio.join(cell_folder, name)
        try:
          record = json.loads(fileio.read_text(path))
        except (OSError, ValueError) as e:
          raise ValueError(f'study cell record {path} is unreadable ({e}); delete it to rerun '
                           'that cell') from None
        if not isinstance(record, dict) or record.get('format') != FORMAT:
          raise ValueError(f'{path} is not a study cell record (format {FORMAT})')
        key = (record['cell'], int(record['seed']))
        if key in found:
          raise ValueError(f'cell {key[0]!r} seed {key[1]} is recorded twice: {where[key]} and '
                           f'{path}; keep one')
        found[key], where[key] = record, path
  return found


def check_config(record: dict, run_config: ml_collections.ConfigDict, where: str) -> None:
  """Refuses a record run with other settings than the study now gives its cell (the paths of
  :data:`MACHINE_PATHS` aside: they name places on the machine that ran it)."""
  differing = saved_config.config_differences(
      json.dumps(record['config']), run_config,
      ignore=saved_config.IGNORED_ON_RESUME + MACHINE_PATHS)
  if differing and not run_config.get('allow_config_change', False):
    raise ValueError(f'{where} is recorded with other settings ({", ".join(differing)}); delete '
                     'its record to rerun it, or change the study back')
