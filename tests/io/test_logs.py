"""A job's log file (unet.io.logs.output_to): its output, native output, and why it failed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

JOB = textwrap.dedent("""
    import os, sys
    from unet.io.logs import output_to
    with output_to(sys.argv[1]):
        print("working on case 7", flush=True)
        os.write(2, b"native stderr line\\n")  # as TensorFlow's C++ logging writes
        if sys.argv[2] == "fail":
            raise ValueError("case 7: label values [5] not in dataset.json")
        if sys.argv[2] == "exit0":
            sys.exit(0)
    print("back on the terminal")
""")


def _run(tmp_path, mode):
    log = tmp_path / "logs" / "job.log"
    result = subprocess.run([sys.executable, "-c", JOB, str(log), mode], capture_output=True, text=True, timeout=60)
    return result, log.read_text()


def test_a_failing_job_logs_its_traceback(tmp_path):
    result, log = _run(tmp_path, "fail")
    assert result.returncode == 1
    assert "working on case 7" in log and "native stderr line" in log
    assert "Traceback (most recent call last)" in log
    assert log.rstrip().endswith("ValueError: case 7: label values [5] not in dataset.json")
    assert "ValueError: case 7" in result.stderr  # and the terminal still shows it


def test_a_job_that_succeeds_leaves_no_traceback(tmp_path):
    for mode in ("ok", "exit0"):
        result, log = _run(tmp_path, mode)
        assert result.returncode == 0
        assert "working on case 7" in log and "Traceback" not in log
    assert "back on the terminal" not in log
