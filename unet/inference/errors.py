"""The one error type of prediction that is the user's mistake, not a bug (no TensorFlow here)."""


class InputError(ValueError):
    """An input folder, model folder or archive, image or model that cannot be used as given: the
    user's mistake, reported in one line naming it (other errors are bugs and keep their traceback)."""
