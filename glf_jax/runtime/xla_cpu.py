"""XLA CPU compiler flags that speed up training on CPU hosts (opt-in).

    from glf_jax.runtime import xla_cpu
    xla_cpu.configure('fast')   # before the first JAX computation / jax.devices() call
    import jax ...

``configure`` appends a preset's flags to the ``XLA_FLAGS`` environment variable. XLA reads that
variable once, when JAX initialises its backends (the first computation, ``jax.devices()``,
...); importing ``jax`` beforehand is fine, but after initialisation the flags would be silently
ignored, so ``configure`` then warns and changes nothing. It is a no-op when JAX will run on an
accelerator (``JAX_PLATFORMS`` / ``jax_platforms`` naming something other than ``cpu`` first, or,
when unset, a GPU/TPU plugin being installed): the flags only concern XLA's CPU backend. Flags
already present in ``XLA_FLAGS`` are left as the user set them.

Presets (jaxlib 0.10.2; measured in ``benchmarks/CPU_PERFORMANCE.md`` with
``benchmarks/cpu_resnet_step.py`` — ResNet-18 SimCLR step, 2-core AVX-512 CPU):

- ``'fast'``: ``--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce`` — hands matmul,
  elementwise and reduction fusions (BatchNorm statistics and their gradients, ReLU masks, the
  projector's matmuls) to YNNPACK: the step runs ≈ 2× faster than with XLA's defaults
  (≈ 2.5–3.0 s instead of ≈ 5.1 s; fp32 accuracy unchanged).
- ``'eltwise_reduce'``: ``...ynn_fusion_type=eltwise,reduce`` — the same without matmuls;
  indistinguishable from ``'fast'`` on the ResNet-18 step, but plain matmuls stay on XNNPACK
  (≈ 90 GFLOP/s here vs ≈ 190-240 with YNNPACK), which matters for wide heads.
- ``'none'``: nothing (XLA's defaults).

The flags are experimental XLA options: a future jaxlib may rename or drop them, in which case
XLA aborts at start-up with "Unknown flag in XLA_FLAGS" — re-measure and update the presets
when upgrading jaxlib.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import warnings

PRESETS: dict[str, tuple[str, ...]] = {
    'none': (),
    'fast': ('--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce',),
    'eltwise_reduce': ('--xla_cpu_experimental_ynn_fusion_type=eltwise,reduce',),
}


def _flag_name(flag: str) -> str:
  return flag.split('=', 1)[0].lstrip('-')


def _backends_initialised() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  except ImportError:  # pragma: no cover - jax not installed
    return False
  check = getattr(xla_bridge, 'backends_are_initialized', None)
  return bool(check()) if check is not None else bool(getattr(xla_bridge, '_backends', {}))


def _accelerator_plugin_installed() -> bool:
  if importlib.util.find_spec('libtpu') is not None:
    return True
  try:
    import jax_plugins  # pylint: disable=g-import-not-at-top
    if any(m.name for m in pkgutil.iter_modules(jax_plugins.__path__)):
      return True
  except ImportError:
    pass
  return any(importlib.util.find_spec(name) is not None
             for name in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm60_plugin',
                          'jax_rocm7_plugin'))


def _runs_on_cpu() -> bool:
  """Whether JAX's default backend will be the CPU (decided without initialising it)."""
  platforms = os.environ.get('JAX_PLATFORMS') or os.environ.get('JAX_PLATFORM_NAME') or ''
  try:
    import jax  # pylint: disable=g-import-not-at-top
    platforms = jax.config.jax_platforms or platforms
  except (ImportError, AttributeError):
    pass
  if platforms:
    return platforms.split(',')[0].strip().lower() == 'cpu'
  return not _accelerator_plugin_installed()


def configure(flags_preset: str = 'fast') -> list[str]:
  """Appends ``PRESETS[flags_preset]`` to ``XLA_FLAGS``; returns the flags it added.

  Call before JAX initialises its backends. No-op (returns ``[]``) on GPU/TPU platforms, after
  initialisation (with a warning), and for flags the user already set in ``XLA_FLAGS``.
  """
  if flags_preset not in PRESETS:
    raise ValueError(f'flags_preset must be one of {sorted(PRESETS)}, got {flags_preset!r}')
  flags = PRESETS[flags_preset]
  if not flags or not _runs_on_cpu():
    return []
  if _backends_initialised():
    warnings.warn('glf_jax.runtime.xla_cpu.configure() called after JAX initialised its backends: '
                  'XLA_FLAGS is no longer read, nothing changed.', stacklevel=2)
    return []
  current = os.environ.get('XLA_FLAGS', '')
  present = {_flag_name(f) for f in current.split()}
  added = [f for f in flags if _flag_name(f) not in present]
  if added:
    os.environ['XLA_FLAGS'] = ' '.join([current, *added]).strip()
  return added
