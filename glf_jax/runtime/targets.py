"""Accelerators this host does not have, as compile targets: their chips' documented figures and
their compile-only devices.

    target = parse_target('tpu:v5e:2x2')      # 4 v5e chips; 'gpu:h100x8': one box of 8 H100s
    devices = compile_only_devices(target)     # abstract jax devices: lower and compile, not run

A target names a platform, a chip and how many of them: ``tpu:<chip>:<topology>`` (a TPU slice,
``topology`` as Cloud TPU names it: ``2x2``, ``8x8``, ``2x2x1``; v4 and v5p chips are one device
each, their two TensorCores fused, as on a TPU VM) or ``gpu:<chip>x<count>`` (``count`` GPUs of
one host). :data:`CHIPS` holds each chip's figures with their sources; the GPU chips' XLA target
descriptions (the device properties XLA's GPU compiler reads instead of a real device) are the
``gpu_specs/*.txtpb`` files beside this module, written from the same datasheets and
XLA's own descriptions (``xla/backends/gpu/target_config/specs``).

Compiling needs the chip's compiler, installed by an extra (never by default): ``pip install -e
.[tpu-aot]`` (libtpu, about 700 MB) or ``.[gpu-aot]`` (the CUDA PJRT plugin without the CUDA
libraries, about 460 MB). Nothing runs on the target, and no TPU or GPU is opened: the process
must run JAX on its CPU (:func:`use_host_cpu`, before JAX starts its backends).

Imports nothing of glf_jax.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import pathlib
import re

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator chip's documented figures (per chip).

  Attributes:
    name: the name a target uses (``v5e``, ``h100``).
    platform: ``'tpu'`` or ``'gpu'``.
    description: what it is, in words.
    memory_bytes: HBM per chip.
    memory_bytes_per_s: HBM bandwidth per chip.
    matmul_flops_per_s: peak dense matrix-unit FLOP/s per chip by the model's compute dtype
      (``config.model.dtype``) as JAX runs it by default: on TPU a float32 matmul or convolution
      is one bfloat16 pass at default precision, on Ampere and Hopper GPUs it runs in TF32.
    source: where the figures are documented.
    tpu_chip_config: libtpu's chip configuration for the compile-only topology (``'megacore'``:
      the chip's two TensorCores are one device, as JAX shows them on a TPU VM); None: default.
    gpu_spec: the XLA GPU target description file in ``gpu_specs/`` (GPU chips).
  """
  name: str
  platform: str
  description: str
  memory_bytes: int
  memory_bytes_per_s: float
  matmul_flops_per_s: dict
  source: str
  tpu_chip_config: str | None = None
  gpu_spec: str | None = None


CHIPS: dict[str, Chip] = {chip.name: chip for chip in (
    Chip('v4', 'tpu', 'TPU v4 (2 TensorCores as one device)', 32 * GIB, 1200e9,
         {'bfloat16': 275e12, 'float32': 275e12},
         'cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16, 32 GiB HBM2, 1200 GB/s',
         tpu_chip_config='megacore'),
    Chip('v5e', 'tpu', 'TPU v5e (v5 lite)', 16 * 10**9, 819e9,
         {'bfloat16': 197e12, 'float32': 197e12},
         'cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16, 16 GB HBM2, 819 GB/s'),
    Chip('v5p', 'tpu', 'TPU v5p (2 TensorCores as one device)', 95 * 10**9, 2765e9,
         {'bfloat16': 459e12, 'float32': 459e12},
         'cloud.google.com/tpu/docs/v5p: 459 TFLOP/s bf16, 95 GB HBM2e, 2765 GB/s',
         tpu_chip_config='megacore'),
    Chip('v6e', 'tpu', 'TPU v6e (Trillium)', 32 * 10**9, 1640e9,
         {'bfloat16': 918e12, 'float32': 918e12},
         'cloud.google.com/tpu/docs/v6e: 918 TFLOP/s bf16, 32 GB HBM, 1640 GB/s'),
    Chip('h100', 'gpu', 'NVIDIA H100 SXM 80GB', 80 * 10**9, 3.35e12,
         {'bfloat16': 989e12, 'float32': 494.7e12},
         'NVIDIA H100 Tensor Core GPU datasheet (SXM): 989 TFLOP/s bf16 and 494.7 TF32 dense '
         '(half the with-sparsity figures), 80 GB HBM3, 3.35 TB/s',
         gpu_spec='h100_sxm.txtpb'),
    Chip('a100', 'gpu', 'NVIDIA A100 SXM 80GB', 80 * 10**9, 2.039e12,
         {'bfloat16': 312e12, 'float32': 156e12},
         'NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB): 312 TFLOP/s bf16 and 156 TF32 '
         'dense, 80 GB HBM2e, 2039 GB/s',
         gpu_spec='a100_sxm_80.txtpb'),
)}

PLATFORMS = ('tpu', 'gpu')
# The share of a chip's memory a JAX program may use: on GPU, JAX preallocates 75% of it
# (XLA_PYTHON_CLIENT_MEM_FRACTION's default) and allocates from that pool.
USABLE_MEMORY = {'tpu': 1.0, 'gpu': 0.75}
EXAMPLES = 'tpu:v5e:2x2, tpu:v4:2x2x1, tpu:v5e:8x8, gpu:h100x8, gpu:a100x8'
# What installs each platform's compiler.
EXTRAS = {'tpu': ('libtpu', 'pip install -e .[tpu-aot]  (or jax[tpu])'),
          'gpu': ('jax_plugins.xla_cuda12', 'pip install -e .[gpu-aot]')}
SPEC_DIR = pathlib.Path(__file__).resolve().parent / 'gpu_specs'
# Fewer images per chip than this and a step is bound by its fixed costs (the replicated state's
# update, the gradient all-reduces), not by its images: the compile mode's ResNet-18 SimCLR+ADC
# step on 64 v5e chips at 8 images each (batch 512) is estimated 5.3x as fast as on 4 chips at
# 128 each, for 16x the chips, computing 8% of its roofline time (README, "Running on TPU and
# GPU").
SMALL_BATCH_PER_DEVICE = 64


def small_batch_warning(batch_size: int, num_devices: int, platform: str,
                        report: dict | None = None) -> str | None:
  """A warning when ``batch_size / num_devices`` images per accelerator device is below
  :data:`SMALL_BATCH_PER_DEVICE` (None on CPU, or when it is not): what to change, and the
  compile mode's estimate where ``report`` (a ``compile_report.json`` for this many devices and
  this batch) is given."""
  per_device = batch_size // num_devices
  if platform not in PLATFORMS or per_device >= SMALL_BATCH_PER_DEVICE:
    return None
  message = (f'{per_device} images per device (train.batch_size {batch_size} over {num_devices} '
             f'{platform.upper()} devices) is small: a step is then bound by its fixed costs (the '
             'replicated state\'s update, the gradient all-reduces), not by its images; raise '
             f'train.batch_size to {SMALL_BATCH_PER_DEVICE * num_devices} or more (the learning '
             'rate follows through optim.lr_scaling) or use fewer devices')
  step = (report or {}).get('train_step') or {}
  bound = step.get('roofline') or {}
  if bound.get('compute_fraction') is not None:
    message += (f'; compile report ({report["target"]}): compute {bound["compute_fraction"]:.0%} '
                f'of the roofline step, about {bound["images_per_second"]:,.0f} images/s')
  return message


@dataclasses.dataclass(frozen=True)
class Target:
  """A parsed compile target (:func:`parse_target`)."""
  name: str          # as given: 'tpu:v5e:2x2'
  chip: Chip
  topology: str      # TPU: '2x2'; GPU: '1x1x8' (slices x hosts x GPUs per host)
  num_devices: int

  @property
  def platform(self) -> str:
    return self.chip.platform


def _bad(spec, why: str) -> ValueError:
  return ValueError(f'compile.target {spec!r}: {why}; a target is tpu:<chip>:<topology> or '
                    f'gpu:<chip>x<count>, e.g. {EXAMPLES}; chips: {sorted(CHIPS)}')


def _chip(spec, name: str, platform: str) -> Chip:
  chip = CHIPS.get(name)
  if chip is None or chip.platform != platform:
    known = sorted(n for n, c in CHIPS.items() if c.platform == platform)
    raise _bad(spec, f'unknown {platform} chip {name!r} (known: {known})')
  return chip


def parse_target(spec) -> Target:
  """``'tpu:v5e:2x2'`` / ``'gpu:h100x8'`` -> :class:`Target`; a ValueError that says what a
  target looks like otherwise."""
  if not isinstance(spec, str) or spec.count(':') not in (1, 2):
    raise _bad(spec, 'not a target')
  platform, _, rest = spec.partition(':')
  if platform == 'tpu':
    name, _, topology = rest.partition(':')
    chip = _chip(spec, name, 'tpu')
    if not re.fullmatch(r'[1-9]\d*(x[1-9]\d*){1,2}', topology):
      raise _bad(spec, f'the topology {topology!r} is not chips per dimension such as 2x2 or '
                 '2x2x1')
    sides = [int(s) for s in topology.split('x')]
    return Target(spec, chip, topology, math.prod(sides))
  if platform == 'gpu':
    match = re.fullmatch(r'([a-z0-9]+)x([1-9]\d*)', rest)
    if not match:
      raise _bad(spec, f'{rest!r} is not <chip>x<count>')
    chip = _chip(spec, match.group(1), 'gpu')
    count = int(match.group(2))
    return Target(spec, chip, f'1x1x{count}', count)
  raise _bad(spec, f'unknown platform {platform!r} (one of {list(PLATFORMS)})')


def compiler_installed(platform: str) -> bool:
  """Whether ``platform``'s compiler (its extra's wheel) is installed."""
  try:
    return importlib.util.find_spec(EXTRAS[platform][0]) is not None
  except ModuleNotFoundError:  # the parent package (jax_plugins) is missing too
    return False


def use_host_cpu() -> None:
  """Runs JAX on this host's CPU: the target's devices are compile-only, and a GPU plugin that
  failed to start a (missing) GPU could no longer describe one. Call before JAX starts its
  backends; afterwards a no-op (the caller's backends stay)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if not xla_bridge.backends_are_initialized():
    jax.config.update('jax_platforms', 'cpu')


def gpu_target_config(chip: Chip) -> str:
  """The XLA GPU target description (text proto) of ``chip``."""
  return (SPEC_DIR / chip.gpu_spec).read_text(encoding='utf-8')


def compile_only_devices(target: Target) -> list:
  """The target's devices, in the order of their ids: abstract (compile-only) JAX devices that
  ``jax.jit(...).lower(...).compile()`` compiles for; nothing can run on them.

  Raises a ValueError naming the install command when the platform's compiler is missing.
  """
  if not compiler_installed(target.platform):
    raise ValueError(f'compiling for {target.name} needs the {target.platform.upper()} compiler, '
                     f'which is not installed: {EXTRAS[target.platform][1]}')
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  if target.platform == 'tpu':
    # libtpu refuses a second process loading it (its lock file guards the chips); a
    # compile-only topology opens no chip, so concurrent compiles (tests, -n 2) are safe.
    os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
    sides = [int(s) for s in target.topology.split('x')] + [1]
    # Hosts of 2x2x1 chips (libtpu's default), fewer in a smaller slice.
    options = {'chips_per_host_bounds': (min(sides[0], 2), min(sides[1], 2), 1)}
    if target.chip.tpu_chip_config:
      options['chip_config_name'] = target.chip.tpu_chip_config
    name, options = f'{target.chip.name}:{target.topology}', dict(platform='tpu', **options)
  else:
    name, options = '', dict(platform='cuda', target_config=gpu_target_config(target.chip),
                             topology=target.topology)
  try:
    topology = topologies.get_topology_desc(name, **options)
  except Exception as e:  # pylint: disable=broad-except  # the compiler's refusal, in one line
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f'compile.target {target.name!r}: the {target.platform.upper()} compiler '
                     f'refuses it: {message}') from e
  devices = sorted(topology.devices, key=lambda d: d.id)
  if len(devices) != target.num_devices:
    raise ValueError(f'compile.target {target.name!r}: the compiler describes {len(devices)} '
                     f'devices, not {target.num_devices}')
  return devices
