"""Evaluation: overlap metrics, per-case tables, summaries across folds, plots.

Pure numpy/pandas/matplotlib; never imports TensorFlow or Keras, so the `evaluate`
stage starts fast. Modules:

- `metrics`: confusion counts and Dice (nnU-Net's convention for empty references).
- `evaluate`: one tidy row per case and label/region; folder evaluation; CSV output.
- `summary`: per label/region means per fold and across folds (summary.json).
- `plots`: box plot of Dice per label/region.
"""
