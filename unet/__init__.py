"""3D medical image segmentation: MSD datasets to evaluated predictions.

Importing the package is cheap on purpose: subpackages that need TensorFlow
(`data`, `model`, `training`, `inference`) import it themselves, so the stages
that do not need a network (download, fingerprint, plan, preprocess, evaluate)
start without paying for it.
"""

__version__ = "0.1.0"
