"""Raw pixels as the evaluated encoder: the baseline column of evaluation tables.

What the evaluators measure on the raw pixels tells whether an encoder's numbers are good: a
linear probe or a kNN on the image itself is the floor a learned representation must clear (on
CIFAR-10 a linear probe on pixels reaches about 0.4). :func:`raw_pixels_context` gives a
:class:`~glf_jax.evaluate.common.Context` whose encoder has no parameters and returns the image
as it enters an encoder — the evaluation transform's crop, resize and normalisation — flattened
(``h`` of ``[b, H * W * 3]``); every evaluator runs on it unchanged. The side is the transform's,
at most :data:`MAX_SIZE` (ImageNet-size images are resized down to it, the "tiny images"
baseline: 224 x 224 x 3 values per image would not fit next to a training set's rows).

``eval.compare_raw_pixels`` switches the column on (``glf_jax.modes``).
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from glf_jax.evaluate import common

# The largest side of the raw-pixel features: 32 x 32 x 3 = 3072 values per image.
MAX_SIZE = 32


class Flatten(nnx.Module):
  """Images ``[b, H, W, C]`` -> ``[b, H * W * C]``: the backbone of :class:`RawPixels`."""

  def __call__(self, x):
    return x.reshape(x.shape[0], -1)


class RawPixels(nnx.Module):
  """An encoder without parameters: ``{'h': the flattened input}`` (an encoder's output form)."""

  def __init__(self):
    self.backbone = Flatten()

  def __call__(self, x):
    return {'h': self.backbone(x)}


def raw_pixels_context(context: common.Context) -> common.Context:
  """``context`` (its data, seed, batch size, feature cache) with :class:`RawPixels` as the
  encoder, the transform's side cut to :data:`MAX_SIZE`. The transform is part of the feature
  cache's key, and no learned encoder has an empty parameter tree: the cached raw-pixel features
  are never another encoder's."""
  graphdef, params, batch_stats = nnx.split(RawPixels(), nnx.Param, nnx.BatchStat)
  transform = dict(context.transform)
  transform['image_size'] = min(int(transform['image_size']), MAX_SIZE)
  return dataclasses.replace(context, eval_graphdef=graphdef, params=params,
                             batch_stats=batch_stats, transform=transform, _features={},
                             _encode_fn=None)
