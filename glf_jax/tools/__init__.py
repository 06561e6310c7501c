"""Command-line tools: ``python -m glf_jax.tools.<name> --help``."""
