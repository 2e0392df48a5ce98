"""Reading and writing files: images (NIfTI, NRRD, MetaImage, DICOM series: `unet.io.images`),
the MSD dataset layout, JSON, atomic writes; and the datasets a run starts from (an MSD download,
a converted BraTS folder, the synthetic demo).

The bottom layer: nothing here imports from `unet` outside `unet.io` (tests/test_imports.py).
"""
