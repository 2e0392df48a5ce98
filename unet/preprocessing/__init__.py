"""Fingerprint, planning, and per-case preprocessing (crop, normalize, resample).

Pure numpy/scipy/nibabel: nothing here imports TensorFlow or Keras.
"""
