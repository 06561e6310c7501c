"""Test set-up: 8 simulated CPU devices and a persistent compilation cache.

The device count must be set before JAX initialises its backends, so it happens here, at import,
before any test module runs.
"""

import os
import pathlib

import jax

jax.config.update('jax_platforms', 'cpu')
jax.config.update('jax_num_cpu_devices', 8)

_CACHE = os.environ.get('GLF_JAX_TEST_CACHE',
                        str(pathlib.Path(__file__).resolve().parent.parent / '.jax_cache'))
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
