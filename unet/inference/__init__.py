"""Inference: sliding-window prediction, test-time augmentation, ensembling, original geometry.

Submodules are imported explicitly (`from unet.inference.sliding_window import ...`), so
importing this package costs nothing; `sliding_window` itself needs only numpy and works with
any callable predictor, a Keras model or not.
"""
