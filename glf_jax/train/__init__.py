"""Pretraining: config tree, train state, optimisers, the pure step, checkpoints and the loop."""
