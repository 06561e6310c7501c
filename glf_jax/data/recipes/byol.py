"""BYOL's asymmetric views (Grill et al. 2020, arXiv 2006.07733, appendix B, table 6).

Both: crop (0.08, 1), flip 0.5, jitter 0.8 with brightness 0.4, contrast 0.4, saturation 0.2,
hue 0.1, grayscale 0.2. View 1: blur 1.0, solarize 0.0. View 2: blur 0.1, solarize 0.2. Only the
normalisation statistics come from the dataset; its family changes nothing here, BYOL uses one
recipe.
"""

import copy

from glf_jax.data.recipes.views import Recipe


def _views(base):
  views = {}
  for name, blur_prob, solarize_prob in (('view1', 1.0, 0.0), ('view2', 0.1, 0.2)):
    view = copy.deepcopy(base)
    view.brightness, view.contrast, view.saturation, view.hue = 0.4, 0.4, 0.2, 0.1
    view.jitter_prob = 0.8
    view.grayscale_prob = 0.2
    view.blur_prob = blur_prob
    view.solarize_prob = solarize_prob
    views[name] = view
  return views


RECIPE = Recipe('byol', _views)
