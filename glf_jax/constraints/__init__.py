"""Constraints: constraining terms that compose with every method by name
(``'<method>+<constraint>'``), one module each defining ``CONSTRAINT = Constraint(name, Term(...))``
(the package is the registry, ``glf_jax.registry``): ``adc``.

Imports: losses, registry.
"""

from glf_jax import registry
from glf_jax.losses.glf import Constraint

CONSTRAINTS: dict[str, Constraint] = registry.collect(__name__, 'CONSTRAINT', Constraint)

__all__ = ['CONSTRAINTS', 'Constraint']
