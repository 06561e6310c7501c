"""What an optimiser of ``config.optim.name`` is (``Optimizer``)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections
import optax


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """One ``optim.name``.

  Attributes:
    name: the ``optim.name`` value.
    build: ``(optim_config, schedule) -> optax.GradientTransformation`` (the config checked).
    base_learning_rate, weight_decay: this optimiser's defaults in ``default_optim_config``.
  """
  name: str
  build: Callable[[ml_collections.ConfigDict, optax.Schedule], optax.GradientTransformation]
  base_learning_rate: float
  weight_decay: float
