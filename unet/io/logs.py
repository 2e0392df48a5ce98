"""Sending a job's output to its log file."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def output_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Redirect stdout and stderr, at the file-descriptor level, to `path` (None: leave them).

    File descriptors rather than `sys.stdout` so that messages from native code
    (TensorFlow's C++ logging) land in the log too.
    """
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException as error:
            # Python prints an uncaught exception only after the terminal is restored below, so
            # without this the log would end without the reason the job failed.
            if not isinstance(error, SystemExit):  # sys.exit is deliberate: its message says enough
                traceback.print_exc()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
