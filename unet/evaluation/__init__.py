"""Evaluation: overlap and surface-distance metrics, per-case tables, summaries, plots.

Pure numpy/scipy/pandas/matplotlib; never imports TensorFlow or Keras, so the `evaluate`
and `report` stages start fast. Modules:

- `metrics`: confusion counts, Dice, IoU, volumes; the empty-structure conventions
  (`evaluate.empty`: "nan" as nnU-Net, "one" as BraTS).
- `distances`: surface distances in mm with anisotropic spacing: HD95, Hausdorff, ASD.
- `evaluate`: one tidy row per case and label/region; folder evaluation; CSV output.
- `summary`: per label/region and metric statistics per fold and across folds
  (summary.json, summary.html).
- `plots`: box plot of a metric per label/region.
- `mosaic`: image, reference and prediction of the worst cases on their slice of most
  disagreement.
- `report`: the report stage: the summary, plots and mosaic of all folds.
- `cv`: cross-validation scores as nnU-Net computes them to choose (classes, Dice, means).
- `postprocessing`: the "keep the largest component" steps that raise the CV Dice
  (postprocessing.json; applied by `unet.inference.postprocess`).
- `selection`: the best configuration or pair ensemble from saved CV probabilities
  (best_configuration.json).
"""
