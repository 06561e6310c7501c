"""Supervised cross-entropy: a linear classifier on the backbone feature ``h``, trained with the
backbone on both views — the alignment study's supervised baseline (arXiv 2510.08852).

The encoder keeps SimCLR's projector (``methods.simclr``; it is not used by this loss, and gets
gradients only from a constraint such as ``ce+adc``), so a cross-entropy run and a SimCLR run with
one seed start from one backbone. The classifier is zero-initialised and needs ``model.num_classes``
(the config builder sets it from the dataset table).

Loss scale: the mean softmax cross-entropy over the ``2N`` views (both views carry the label).
"""

import jax.numpy as jnp

from glf_jax.losses import checks
from glf_jax.losses.contrastive import cross_entropy
from glf_jax.losses.glf import Term
from glf_jax.methods import simclr
from glf_jax.methods.base import Method, projections, views_of


def _objective_inputs(out, params, n):
  logits1, logits2 = views_of(out['logits'], n)
  return {**projections(out, params, n), 'logits1': logits1, 'logits2': logits2}


def _loss(outputs, batch, **hyper):
  labels = batch['label']
  return cross_entropy(jnp.concatenate([outputs['logits1'], outputs['logits2']]),
                       jnp.concatenate([labels, labels]), **hyper)


METHOD = Method(
    name='ce',
    term=Term(_loss, dict(label_smoothing=0.0), needs=('logits1', 'logits2'), needs_labels=True,
              check=lambda h, where: checks.check_nonnegative(f'{where}.label_smoothing',
                                                              h['label_smoothing'])),
    heads=simclr.HEADS,
    classifier=True,
    objective_inputs=_objective_inputs,
)
