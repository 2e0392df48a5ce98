"""Reading and writing files: NIfTI images, the MSD dataset layout, JSON, atomic writes."""
