"""SimCLR's views (Chen et al. 2020, arXiv 2002.05709, appendix A; CIFAR settings from appendix
B.9): two views drawn from one recipe, ``view1`` and ``view2`` identical."""

import copy

from glf_jax.data.recipes.views import Recipe

RECIPE = Recipe('simclr', lambda base: {'view1': base, 'view2': copy.deepcopy(base)})
