"""ADC's frozen prior encoders ``f_pre`` (LPM; docs/maths.md §3), chosen by ``config.prior.kind``.

One module per kind (the package is the registry, ``glf_jax.registry``): ``pixels`` (the input
space itself, the paper's "identity" prior; the default), ``random`` (a frozen random network: a
control), ``checkpoint`` (the encoder of an earlier run), ``weights`` (this library's weights file),
``torchvision`` (an ImageNet ResNet state dict) and ``features`` (precomputed per-example
features, e.g. CLIP's; ``features_file`` is their file format and ``__main__`` the command (``python -m glf_jax.prior``)
that writes them for a glf_jax or torchvision encoder).

A prior is ``(apply_fn, prior_state)``: ``apply_fn(prior_state, views, batch=None) -> features
[2B, d]`` (``views``: both views stacked, ``batch``: the step's batch) is pure and runs in eval
mode (BatchNorm running statistics) under ``stop_gradient``; the state is passed to the train
step as an argument, never updated and never checkpointed (it is rebuilt from the config on
resume, identically).

Imports: models, data, evaluate (loading a saved encoder), registry.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import ml_collections
from ml_collections import config_dict

from glf_jax import registry
from glf_jax.prior.base import Prior

PRIORS: dict[str, Prior] = registry.collect(__name__, 'PRIOR', Prior)
PRIOR_KINDS = tuple(PRIORS)
PRIOR_FEATURES = ('h', 'z')


def default_prior_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      kind='pixels',      # pixels | random | checkpoint | weights | features | torchvision
      path=config_dict.placeholder(str),  # checkpoint: a workdir; weights: a weights file
      pixel_size=config_dict.placeholder(int),  # pixels: resize each view to this side first
      feature='h',        # encoder priors: backbone feature 'h' or projection 'z'
      seed=1,             # random: initialisation seed
  ))


def build_prior(config: ml_collections.ConfigDict, objective, source=None
                ) -> tuple[Callable[..., jax.Array] | None, Any]:
  """``(apply_fn, prior_state)`` for ``config.prior`` (see the module docstring).

  ``source``: the training source (``prior.kind='features'`` checks its file against it).

  ``(None, {})`` when the objective reads no prior features (``'prior1' not in objective.needs``:
  no constraint with a prior, or ADC's DCM alone, ``υ = 0``).
  """
  if 'prior1' not in objective.needs:
    return None, {}
  c = config.prior
  if c.kind not in PRIORS:
    raise ValueError(f'prior.kind must be one of {list(PRIOR_KINDS)}, got {c.kind!r}')
  if c.feature not in PRIOR_FEATURES:
    raise ValueError(f'prior.feature must be one of {list(PRIOR_FEATURES)}, got {c.feature!r}')
  kind = PRIORS[c.kind]
  if kind.needs_path and not c.path:
    raise ValueError(f'prior.path must be set for prior.kind={c.kind!r}')
  return kind.build(config, source)
