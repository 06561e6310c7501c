"""Studies: the papers' experiments as cells of runs over seeds, and their tables and figures.

``spec``: a study's definition (cells, seeds, figures, each run's config, the workdir's layout);
``runner``: runs the plan (each (cell, seed) a normal run through ``glf_jax.modes``, sharded over
processes or a SLURM array); ``aggregate``: ``results.csv``, ``results.md`` and the figures from
whatever cells exist.

Imports: modes, cohort, config, methods, plots, run, runtime.
"""
