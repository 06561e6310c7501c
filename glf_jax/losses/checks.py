"""Argument validation shared by every loss.

Hyperparameters arrive as Python numbers from configs; they are checked at trace time and a bad
one raises ``ValueError`` naming the parameter and its allowed range. A traced hyperparameter
(e.g. a schedule value passed into a jitted step) cannot be checked and is let through.

Each value is validated once, where it enters: a direct call of a loss checks its
hyperparameters; an objective built from a config has each term check them when it is built
(``glf_jax.losses.glf.Term.check``, written beside the term's defaults with these functions) and
calls the losses inside :func:`validated`, which turns the hyperparameter checks (not the checks
of the arrays) into no-ops.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any

_VALIDATED = contextvars.ContextVar('glf_jax_hyperparameters_validated', default=False)


@contextlib.contextmanager
def validated():
  """Within this context the hyperparameter checks pass: the caller has validated them."""
  token = _VALIDATED.set(True)
  try:
    yield
  finally:
    _VALIDATED.reset(token)

import jax
import jax.numpy as jnp


def _concrete(value: Any) -> float | None:
  """Returns ``value`` as a float when it is known (and not yet validated), else ``None``."""
  if _VALIDATED.get() or isinstance(value, jax.core.Tracer):
    return None
  try:
    return float(value)
  except (TypeError, ValueError) as err:
    raise ValueError(f'expected a number, got {value!r}') from err


def check_positive(name: str, value: Any) -> None:
  v = _concrete(value)
  if v is not None and not (v > 0 and math.isfinite(v)):
    raise ValueError(f'{name} must be a finite number > 0, got {value!r}')


def check_nonnegative(name: str, value: Any) -> None:
  v = _concrete(value)
  if v is not None and not (v >= 0 and math.isfinite(v)):
    raise ValueError(f'{name} must be a finite number >= 0, got {value!r}')


def check_greater(name: str, value: Any, bound: float) -> None:
  v = _concrete(value)
  # rho = inf is allowed: the Student-t then equals the Gaussian.
  if v is not None and not v > bound:
    raise ValueError(f'{name} must be > {bound:g}, got {value!r}')


def check_choice(name: str, value: Any, allowed) -> None:
  if not _VALIDATED.get() and value not in allowed:
    raise ValueError(f'{name} must be one of {sorted(allowed)}, got {value!r}')


def check_positive_int(name: str, value: Any, *, optional: bool = False) -> None:
  """An int >= 1 (or, ``optional``, None); a config's value, checked once where it enters."""
  if optional and value is None:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{name} must be an int >= 1{" or None" if optional else ""}, got {value!r}')


def check_block_size(block_size: Any) -> None:
  if block_size is None or _VALIDATED.get():
    return
  if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
    raise ValueError(f'block_size must be None (dense) or an int >= 1, got {block_size!r}')


def check_views(z1, z2, names=('z1', 'z2')) -> None:
  """Two views must be matching ``[N, D]`` arrays with ``N >= 1``."""
  for name, z in zip(names, (z1, z2)):
    if jnp.ndim(z) != 2:
      raise ValueError(f'{name} must have shape [N, D], got shape {jnp.shape(z)}')
  if jnp.shape(z1) != jnp.shape(z2):
    raise ValueError(
        f'{names[0]} and {names[1]} must have the same shape, got {jnp.shape(z1)} and '
        f'{jnp.shape(z2)}')
  if jnp.shape(z1)[0] < 1:
    raise ValueError(f'{names[0]} must hold at least one row, got shape {jnp.shape(z1)}')


def check_labels(labels, num_rows: int) -> None:
  if jnp.ndim(labels) != 1 or jnp.shape(labels)[0] != num_rows:
    raise ValueError(
        f'labels must have shape [{num_rows}] (one label per image of a view), got shape '
        f'{jnp.shape(labels)}')
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
    raise ValueError(f'labels must be integers, got dtype {jnp.asarray(labels).dtype}')


def compute_dtype(*arrays):
  """float32 for low-precision inputs (bf16/f16), float64 stays float64 (x64 mode)."""
  return jnp.result_type(jnp.float32, *[a.dtype for a in arrays])
