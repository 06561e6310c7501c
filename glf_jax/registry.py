"""The one way glf_jax builds its registries: a package's modules are its entries.

Each registry is a package: methods (``glf_jax.methods``, record ``METHOD``), constraints
(``glf_jax.constraints``, ``CONSTRAINT``), evaluators (``glf_jax.evaluate``, ``EVALUATOR``), view
recipes (``glf_jax.data.recipes``, ``RECIPE``), prior kinds (``glf_jax.prior``, ``PRIOR``) and
optimisers (``glf_jax.train.optimizers``, ``OPTIMIZER``). Every module of the package that defines
the record adds one entry, named by the record's ``name``; modules without one hold shared parts.
Adding an entry is adding a module: nothing registers itself and no table is edited. The
package's ``__init__`` builds its table once, at import, with :func:`collect`; nothing mutates it
afterwards (tests that need a temporary entry patch the dict).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def collect(package: str, attribute: str, kind: type) -> dict[str, Any]:
  """``{record.name: record}`` of every module of ``package`` (in name order) that defines
  ``attribute``, an instance of ``kind``; two records with one name are refused."""
  path = importlib.import_module(package).__path__
  entries: dict[str, Any] = {}
  for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
    if info.ispkg or info.name.startswith('_'):
      continue
    module = importlib.import_module(f'{package}.{info.name}')
    record = getattr(module, attribute, None)
    if record is None:
      continue
    if not isinstance(record, kind):
      raise TypeError(f'{module.__name__}.{attribute} must be a {kind.__name__}, got '
                      f'{type(record).__name__}')
    if record.name in entries:
      raise ValueError(f'{module.__name__}.{attribute} is named {record.name!r}, like another '
                       f'entry of {package}')
    entries[record.name] = record
  return entries
