"""The ``compile`` mode: the run's train step and evaluation forward compiled on this CPU for an
accelerator it does not have, and what the compiler says about them, per device.

    python -m glf_jax.main --config configs/simclr.py:adc --workdir /tmp/c \\
        --config.mode=compile --config.compile.target=tpu:v5e:2x2

``compile.target`` names the chips (``glf_jax.runtime.targets``: ``tpu:v5e:2x2``,
``tpu:v4:2x2x1``, ``gpu:h100x8``, ...). The train step is the one pretraining runs: the state's
shapes from ``build_training(config, abstract=True)`` (nothing allocated), ``train_step`` jitted
with ``donate_argnums=0``, over a ``data`` mesh of all the target's devices (``train.num_devices``
is a CPU run's setting, not used here), the state and the prior replicated and the batch sharded
(``glf_jax.runtime.devices``). The evaluation forward is the
evaluators' ``make_encode``, compiled as they run it: on one device, ``eval.batch_size`` images.
The data's sizes come from the dataset table (``glf_jax.data.datasets``): nothing is read.

For each program: argument / output / aliased / temporary / code bytes per device against the
chip's memory, FLOPs and bytes per call, the collectives (count and bytes by kind) and the
roofline estimate (``glf_jax.runtime.compiled``; images/s and seconds per epoch from the chip's
documented figures). One table on the terminal, ``compile_report.json`` in the workdir (and each
program's optimised HLO, ``compile_<program>.hlo.txt``: what every collective comes from), and an
``error:`` line (exit status 1) when a program does not fit in the chip's memory: the TPU
compiler refuses such a program itself (no report); for GPU the report is written first. Needs
the target's compiler: ``pip install -e .[tpu-aot]`` or ``.[gpu-aot]``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jax
from flax import nnx
import jax.numpy as jnp
import ml_collections

from glf_jax import prior as prior_lib
from glf_jax.data import datasets
from glf_jax.evaluate import features
from glf_jax.modes.evaluation import eval_data_config
from glf_jax.run import layout
from glf_jax.runtime import compiled as compiled_lib
from glf_jax.runtime import devices as devices_lib
from glf_jax.runtime import fileio
from glf_jax.runtime import targets
from glf_jax.train.setup import build_training

MIB = 2**20


def _image_side(data: ml_collections.ConfigDict) -> int:
  """The side of the images the data yields (``data.image_size``, else the table's)."""
  return int(data.get('image_size') or datasets.dataset_info(data.name).image_size)


def data_sizes(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What the run's data would give, from the dataset table: ``num_classes``, ``image_side``
  and ``epoch_images`` (``compile.num_examples``, else the table's training split; None when
  neither knows it)."""
  data = config.data
  info = datasets.dataset_info(data.name)
  num_classes = data.get('num_classes_subset') or info.num_classes or config.model.num_classes
  if not num_classes:
    raise ValueError(f'the number of classes of data {data.name!r} is known only when it is '
                     'read; set --config.model.num_classes')
  epoch_images = config.compile.num_examples or info.train_examples
  if epoch_images and data.get('num_classes_subset') and info.num_classes:
    epoch_images = epoch_images * data.num_classes_subset // info.num_classes
  return {'num_classes': int(num_classes), 'image_side': _image_side(data),
          'epoch_images': epoch_images}


def _abstract(tree, sharding):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _tree_bytes(tree) -> int:
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


# XLA's GPU compiler without a device does not autotune: for some small float32 dots (the
# evaluation transform's resize) its default Triton tiling fails ("Couldn't find output tile
# sizes", jaxlib 0.10.2). The program is then compiled again with Triton's GEMMs off (cuBLAS),
# and the report says so.
_GPU_RETRY = ("Couldn't find output tile sizes", {'xla_gpu_enable_triton_gemm': False})


def _compile(what: str, fn, *args, donate: tuple[int, ...] = ()) -> tuple[Any, float, dict]:
  """``(compiled, seconds, compiler options it needed)``; a ValueError naming ``what`` when the
  compiler finds it too large for the chip (the TPU compiler checks; the GPU one does not)."""
  start = time.perf_counter()
  lowered = jax.jit(fn, donate_argnums=donate).lower(*args)
  options = {}
  try:
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
      if _GPU_RETRY[0] not in str(e):
        raise
      options = _GPU_RETRY[1]
      compiled = lowered.compile(compiler_options=options)
  except jax.errors.JaxRuntimeError as e:
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    message = str(e).strip().splitlines()[0].replace('RESOURCE_EXHAUSTED: ', '')
    raise ValueError(f'the {what} does not fit: {message}; lower the batch size per device or '
                     'the model size') from None
  return compiled, time.perf_counter() - start, options


def _train_step(config, mesh, sizes):
  """The compiled train step and what its shardings imply (``state_bytes``, the replicated
  state and prior; ``batch_bytes_per_device``)."""
  batch_size = int(config.train.batch_size)
  n = mesh.size
  if batch_size % n:
    raise ValueError(f'train.batch_size {batch_size} does not divide over the target\'s {n} '
                     'devices')
  steps_per_epoch = max(1, (sizes['epoch_images'] or batch_size) // batch_size)
  training = build_training(config, steps_per_epoch=steps_per_epoch,
                            num_classes=sizes['num_classes'], abstract=True)
  # The prior is built as pretraining builds it (pixels: no state; encoders: their weights).
  prior_apply, prior_state = prior_lib.build_prior(config, training.objective, None)
  replicated, sharded = devices_lib.replicated(mesh), devices_lib.data_sharding(mesh)
  state = _abstract(training.state, replicated)
  prior = _abstract(prior_state, replicated)
  side = sizes['image_side']
  batch = {'image': jax.ShapeDtypeStruct((batch_size, side, side, 3), jnp.uint8,
                                         sharding=sharded),
           'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharded),
           'index': jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharded)}
  compiled, seconds, options = _compile('train step', training.train_step(prior_apply), state,
                                        batch, prior, donate=(0,))
  implied = {'compiler_options': options, 'state_bytes': _tree_bytes(state) + _tree_bytes(prior),
             'batch_bytes_per_device': _tree_bytes(batch) // n}
  return compiled, seconds, implied, training


def _eval_forward(config, device, training, sizes):
  """The evaluators' compiled forward on one device (as they run it) and its input bytes."""
  eval_side = _image_side(eval_data_config(config.eval, config.data))
  on_device = jax.sharding.SingleDeviceSharding(device)
  params = _abstract(training.state['params'], on_device)
  stats = _abstract(training.state['batch_stats'], on_device)
  graphdef, state = nnx.split(nnx.merge(training.eval_graphdef, params, stats))
  t = config.eval.transform
  encode = features.make_encode(graphdef, state, image_size=int(t.image_size), mean=t.mean,
                                std=t.std, crop_fraction=float(t.crop_fraction))
  images = jax.ShapeDtypeStruct((int(config.eval.batch_size), eval_side, eval_side, 3),
                                jnp.uint8, sharding=on_device)
  compiled, seconds, options = _compile('eval forward', encode, state, images)
  del sizes
  return compiled, seconds, {'compiler_options': options, 'state_bytes': _tree_bytes(state),
                             'batch_bytes_per_device': _tree_bytes(images)}


def _program(compiled, seconds, implied, *, chip, dtype, devices, batch, epoch_images):
  figures = compiled_lib.program_figures(compiled)
  usable = int(chip.memory_bytes * targets.USABLE_MEMORY[chip.platform])
  peak = figures['memory']['peak_bytes'] if figures['memory'] else None
  return {
      'devices': devices, 'batch': batch, 'batch_per_device': batch // devices,
      'compile_seconds': round(seconds, 1), **implied, **figures,
      'usable_memory_bytes': usable, 'fits': None if peak is None else peak <= usable,
      'roofline': compiled_lib.roofline(
          figures, matmul_flops_per_s=chip.matmul_flops_per_s[dtype],
          memory_bytes_per_s=chip.memory_bytes_per_s, images_per_step=batch,
          epoch_images=epoch_images),
  }


def build_report(config: ml_collections.ConfigDict) -> tuple[dict[str, Any], dict[str, str]]:
  """Compiles the run's programs for ``config.compile.target``; returns the report (module
  docstring; what ``compile_report.json`` holds) and each program's optimised HLO text."""
  target = targets.parse_target(config.compile.target)
  devices = targets.compile_only_devices(target)
  mesh = devices_lib.make_mesh(devices=devices)  # every chip of the target (not train.num_devices)
  sizes = data_sizes(config)
  chip, dtype = target.chip, str(config.model.dtype)
  step, step_s, step_implied, training = _train_step(config, mesh, sizes)
  forward, forward_s, forward_implied = _eval_forward(config, devices[0], training, sizes)
  texts = {'train_step': step.as_text(), 'eval_forward': forward.as_text()}
  return {
      'mode': 'compile', 'target': target.name, 'device_kind': devices[0].device_kind,
      'chip': {'name': chip.name, 'description': chip.description,
               'memory_bytes': chip.memory_bytes, 'memory_bytes_per_s': chip.memory_bytes_per_s,
               'matmul_flops_per_s': chip.matmul_flops_per_s[dtype], 'source': chip.source},
      'run': {'objective': config.objective.name, 'arch': config.model.arch, 'dtype': dtype,
              'dataset': config.data.name, 'image_side': sizes['image_side'],
              'epoch_images': sizes['epoch_images']},
      'train_step': _program(step, step_s, step_implied, chip=chip, dtype=dtype,
                             devices=mesh.size, batch=int(config.train.batch_size),
                             epoch_images=sizes['epoch_images']),
      'eval_forward': _program(forward, forward_s, forward_implied, chip=chip, dtype=dtype,
                               devices=1, batch=int(config.eval.batch_size),
                               epoch_images=None),
  }, texts


def _mib(value):
  if value is None:
    return '-'
  return f'{value / MIB:,.{1 if value >= 10 * MIB else 2}f}'


def _number(value, scale=1.0, digits=1):
  return '-' if value is None else f'{value * scale:,.{digits}f}'


def _rows(report) -> list[tuple[str, str, str]]:
  """(figure, train step, eval forward) rows of the terminal table."""
  programs = (report['train_step'], report['eval_forward'])

  def row(name, get):
    return (name, *(get(p) for p in programs))
  rows = [row('devices', lambda p: str(p['devices'])),
          row('batch (per device)', lambda p: f'{p["batch"]} ({p["batch_per_device"]})'),
          row('compile s (this CPU)', lambda p: f'{p["compile_seconds"]:.1f}')]
  rows.append(row('argument MiB, unpadded', lambda p: _mib(p['argument_logical_bytes'])))
  for key in ('argument', 'output', 'alias', 'temp', 'code'):
    rows.append(row(f'{key} MiB', lambda p, k=key: _mib((p['memory'] or {}).get(f'{k}_bytes'))))
  rows.append(row('peak MiB / usable', lambda p: '-' if not p['memory'] else
                  f'{_mib(p["memory"]["peak_bytes"])} / {_mib(p["usable_memory_bytes"])}'))
  rows.append(row('GFLOP per call', lambda p: _number(p['flops'], 1e-9, 2)))
  rows.append(row('GB accessed per call', lambda p: _number(p['bytes_accessed'], 1e-9, 2)))
  for kind in compiled_lib.COLLECTIVES:
    rows.append(row(kind, lambda p, k=kind: '-' if not p['collectives'][k]['count'] else
                    f'{p["collectives"][k]["count"]} x, {_mib(p["collectives"][k]["bytes"])} MiB'))
  rows += [row('compute-bound ms', lambda p: _number(p['roofline']['compute_seconds'], 1e3, 2)),
           row('HBM-bound ms', lambda p: _number(p['roofline']['memory_seconds'], 1e3, 2)),
           row('compute fraction', lambda p: _number(p['roofline']['compute_fraction'], 1, 2)),
           row('estimate img/s', lambda p: _number(p['roofline']['images_per_second'], 1, 0)),
           row('estimate s per epoch', lambda p: _number(p['roofline']['epoch_seconds'], 1, 1))]
  return rows


def format_report(report: dict[str, Any]) -> str:
  """The terminal table of a report."""
  run, chip = report['run'], report['chip']
  title = (f'compile {run["objective"]} {run["arch"]} {run["dtype"]} on {run["dataset"]} '
           f'({run["image_side"]} px, {run["epoch_images"] or "?"} images per epoch) for '
           f'{report["target"]}: {report["train_step"]["devices"]} x {report["device_kind"]}')
  rows = [('per device', 'train step', 'eval forward'), *_rows(report)]
  widths = [max(len(r[i]) for r in rows) for i in range(3)]
  lines = [title] + ['  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
  for name in ('train_step', 'eval_forward'):
    if report[name]['compiler_options']:
      lines.append(f'{name.replace("_", " ")} compiled with {report[name]["compiler_options"]}: '
                   "the compile-only GPU compiler (no autotuning) found no Triton tiling for a dot")
  lines.append(f'chip figures: {chip["source"]}; roofline: max(FLOPs / peak '
               f'{chip["matmul_flops_per_s"] / 1e12:g} TFLOP/s {run["dtype"]}, bytes / '
               f'{chip["memory_bytes_per_s"] / 1e9:g} GB/s HBM)')
  return '\n'.join(lines)


def run_compile(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The mode (module docstring): prints the table, writes ``compile_report.json`` and the HLO
  texts, returns the report; a ValueError (the report written) when a program does not fit."""
  report, texts = build_report(config)
  if jax.process_index() == 0:
    print(format_report(report), flush=True)
    with fileio.atomic_write(layout.path(workdir, layout.COMPILE_REPORT), 'w',
                             encoding='utf-8') as f:
      json.dump(report, f, indent=2)
    for name, text in texts.items():  # where each collective comes from: its op_name metadata
      with fileio.atomic_write(layout.path(workdir, layout.COMPILE_HLO.format(name)), 'w',
                               encoding='utf-8') as f:
        f.write(text)
  for name in ('train_step', 'eval_forward'):
    program = report[name]
    if program['fits'] is False:
      raise ValueError(
          f'the {name.replace("_", " ")} does not fit: '
          f'{program["memory"]["peak_bytes"] / 2**30:.2f} GiB per device, '
          f'{program["usable_memory_bytes"] / 2**30:.2f} GiB usable on {report["target"]}'
          f' (report in {layout.path(workdir, layout.COMPILE_REPORT)}); lower the batch size '
          'per device or the model size')
  return report
