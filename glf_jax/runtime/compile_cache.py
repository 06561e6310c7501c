"""JAX's persistent compilation cache, on by default: compiled programs are kept on disk.

A resumed, pre-empted or repeated run (every cell of a study, every evaluation) then loads its
training step and evaluation programs instead of compiling them again: a ResNet-18 step takes
minutes of CPU time to compile for a TPU slice, and every restart paid it.

    from glf_jax.runtime import compile_cache
    compile_cache.configure(config.compilation_cache_dir)   # before the first compile

Where (``config.compilation_cache_dir``):

* default :func:`default_dir`: ``$XDG_CACHE_HOME/glf_jax/xla``, else ``~/.cache/glf_jax/xla``:
  one per user and machine, shared by every run, study and workdir on it (the cache is keyed by
  the program, the JAX/XLA version, the devices and ``XLA_FLAGS``, so runs never see another's
  programs by mistake), surviving workdirs that are deleted; ``$JAX_COMPILATION_CACHE_DIR``,
  when set, replaces the default (not a directory given in the config);
* any directory, or a ``gs://`` bucket path: on pre-emptible TPU VMs, which come back as fresh
  machines with an empty home directory, a bucket keeps the programs across pre-emptions;
* ``'none'`` (``--config.compilation_cache_dir=none``), ``None`` or ``''``: off (also when
  ``$JAX_COMPILATION_CACHE_DIR`` is set).

Which compilations are stored is JAX's choice (``jax_persistent_cache_min_compile_time_secs``,
1 s by default: the steps, not the small helpers). Entries are never evicted: delete the folder
to reclaim the space.
"""

from __future__ import annotations

import os

import jax

ENVIRONMENT = 'JAX_COMPILATION_CACHE_DIR'


def default_dir() -> str:
  """``$XDG_CACHE_HOME/glf_jax/xla``, else ``~/.cache/glf_jax/xla`` (``~`` unexpanded)."""
  return os.path.join(os.environ.get('XDG_CACHE_HOME') or '~/.cache', 'glf_jax', 'xla')


def configure(directory: str | None) -> str | None:
  """Points JAX's persistent compilation cache at ``directory`` (see the module docstring);
  ``'none'``, ``None`` or ``''`` turns it off. Returns the directory in use, or None when off.

  Call it before the first compilation: JAX opens the cache once, at its first use.
  """
  if not directory or directory.lower() == 'none':
    jax.config.update('jax_enable_compilation_cache', False)
    return None
  if directory == default_dir() and os.environ.get(ENVIRONMENT):
    directory = os.environ[ENVIRONMENT]
  if '://' not in directory:
    directory = os.path.abspath(os.path.expanduser(directory))
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', directory)
  return directory
