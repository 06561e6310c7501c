"""Device mesh, shardings, multi-process start-up and global batch assembly.

Data parallelism is expressed with a 1-D mesh over every device (axis ``'data'``) and global
``jax.Array``s whose leading (batch) axis is sharded over it; ``jax.jit`` then runs one program
over all devices, in one process or many. (No ``pmap``.)

    initialize_distributed(...)            # before anything else touches JAX, multi-process only
    mesh = make_mesh()
    for local_batch in loader:             # this process's rows (glf_jax.data.pipeline)
      batch = to_global_batch(local_batch, mesh)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
  """Starts ``jax.distributed`` when multi-process settings are given; else does nothing.

  Returns whether it initialised. ``num_processes=1`` (or no settings) is a single process and
  needs no coordinator; ``num_processes=-1`` lets ``jax.distributed`` find the cluster from the
  environment (SLURM, TPU pods, Open MPI). Call it before any other JAX call.
  """
  settings = (coordinator_address, num_processes, process_id)
  if all(s is None for s in settings) or num_processes == 1:
    return False
  if jax.distributed.is_initialized():
    logging.info('jax.distributed already initialised; keeping it')
    return False
  if num_processes == -1:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  logging.info('jax.distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def make_mesh(num_devices: int | None = None, axis_name: str = 'data', *,
              devices: Sequence[Any] | None = None) -> Mesh:
  """A 1-D mesh over all devices (or the first ``num_devices``, single-process only).

  ``devices``: the devices to use instead of ``jax.devices()`` (e.g. a compile target's
  compile-only devices, ``glf_jax.runtime.targets``).
  """
  available = list(jax.devices() if devices is None else devices)
  if num_devices is not None:
    if not 1 <= num_devices <= len(available):
      raise ValueError(f'num_devices must lie in [1, {len(available)}], got {num_devices}')
    if num_devices != len(available) and jax.process_count() > 1:
      raise ValueError('a mesh over a subset of devices needs a single process; '
                       'leave num_devices=None in multi-process runs')
    available = available[:num_devices]
  # Auto axes: shardings propagate through jit, as the losses' sharded tests expect.
  return jax.make_mesh((len(available),), (axis_name,),
                       axis_types=(jax.sharding.AxisType.Auto,), devices=available)


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh's (first) axis: the batch sharding."""
  return NamedSharding(mesh, P(mesh.axis_names[0]))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device: parameters and optimiser state under data parallelism."""
  return NamedSharding(mesh, P())


def to_global_batch(local_batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows (dict of NumPy arrays) -> global arrays sharded over the batch axis.

  With ``P`` processes each holding ``b`` rows, every array becomes ``[P*b, ...]``, each
  process's rows on its own devices, in the mesh's device order
  (``jax.make_array_from_process_local_data``); with one process it is the input itself, spread
  over the mesh's devices.
  """
  sharding = data_sharding(mesh)
  local_devices = len(mesh.local_devices)

  def checked(path, value):
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] % local_devices:
      raise ValueError(f'batch entry {jax.tree_util.keystr(path)} has shape {value.shape}: its '
                       f'leading axis must divide evenly over {local_devices} local devices')
    return value

  batch = jax.tree_util.tree_map_with_path(checked, dict(local_batch))
  if jax.process_count() == 1:
    # The rows are the global array: one device_put places the whole batch (about half the host
    # time of the per-array path), using the host buffer as it is where the backend can (CPU).
    return jax.device_put(batch, sharding, may_alias=True)
  return jax.tree.map(lambda value: jax.make_array_from_process_local_data(sharding, value),
                      batch)
