"""glf_jax: self-supervised contrastive learning in JAX/Flax (the Generalized Learning Framework)."""

__version__ = '0.1.0'
