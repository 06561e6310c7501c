"""A run's workdir and everything written there, and the training session that writes it.

``layout``: every file name of a workdir; ``lock``: one run per workdir; ``checkpoint``: orbax
checkpoints (state, data position, meta); ``saved_config``: ``config.json`` and comparing a new
config with a saved one; ``metrics_log``: ``metrics.jsonl`` / ``tracks.jsonl`` and TensorBoard;
``records``: ``summary.json`` and ``evaluations.jsonl``; ``session``: the one training session
(mesh, data position, checkpointing, logs, timing, interruption, the NaN guard) that pretraining
and cohorts drive.

Imports: data (the training loader), runtime.
"""
