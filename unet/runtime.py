"""Process settings that must be made before TensorFlow is imported."""

from __future__ import annotations

import os


def configure_tensorflow(threads: int) -> None:
    """Quiet TensorFlow's start-up logging and size its thread pools to the job's `threads`.

    Call before anything imports TensorFlow: it reads these variables once, at import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(max(1, threads))
    os.environ["TF_NUM_INTEROP_THREADS"] = str(max(1, min(2, threads)))
