"""Evaluation of encoders: feature extraction + cache, linear probe, kNN, fine-tuning / transfer.

* ``features.extract_features``: frozen features of a source, cached as ``.npz``.
* ``linear_probe.linear_probe``: optax linear classifier on frozen features (top-1 / top-5).
* ``knn.knn_accuracy``: temperature-weighted cosine kNN.
* ``finetune.finetune``: full fine-tuning, or a frozen-backbone classifier, on another dataset.
* ``report.format_table``: results side by side.
"""
