"""Evaluation metrics for learned representations (pure functions, NumPy or JAX arrays in)."""

from glf_jax.metrics.geometry import alignment_uniformity, class_geometry, prototype_bias
from glf_jax.metrics.representation import linear_cka, rsa, weight_gap

__all__ = [
    'alignment_uniformity',
    'class_geometry',
    'linear_cka',
    'prototype_bias',
    'rsa',
    'weight_gap',
]
