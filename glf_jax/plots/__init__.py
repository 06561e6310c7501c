"""Every picture glf_jax draws: PNG files drawn with matplotlib's headless ``Figure``.

``run``: a run's ``curves.png`` (loss terms, online probe, learning rate) and ``embedding.png``
(t-SNE of test features, with ``embedding.npz`` to redraw it); ``tracks``: a cohort's
``tracks.png``; ``study``: a study's figures (one drawer per figure kind) from data the study
aggregated; ``common``: the atomic PNG write they share.

Imports: run (file names, logs), runtime.
"""
