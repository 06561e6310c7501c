"""GLF losses: pure, jittable functions of arrays returning ``(loss, aux)`` (docs/maths.md §1-3).

One module per family; each module's ``__all__`` (its losses) is re-exported here, so
``glf_jax.losses.nt_xent`` is ``glf_jax.losses.contrastive.nt_xent`` and a new module's losses
appear without editing this file. ``checks`` (argument checks), ``similarity`` (pairwise
similarities), ``blockwise`` (``map_rows``) and ``glf`` (terms and their composition) are the
shared parts.

Imports nothing of glf_jax outside this package.
"""

import importlib
import pkgutil

__all__ = []
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  _module = importlib.import_module(f'{__name__}.{_info.name}')
  for _name in getattr(_module, '__all__', ()):
    globals()[_name] = getattr(_module, _name)
    __all__.append(_name)
__all__.sort()
del _info, _module, _name
