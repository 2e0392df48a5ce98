"""GPU assignment (unet/runtime.py): each job gets GPUs of its own, none on a CPU machine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from unet.runtime import assign_gpus, local_gpu_ids

HOLD = textwrap.dedent("""
    import os, sys
    from unet.runtime import assign_gpus
    print(assign_gpus(int(sys.argv[1]), lock_dir=sys.argv[2], timeout=float(sys.argv[3])),
          os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    sys.stdin.read()  # hold the GPUs until the test closes stdin
""")


def _env(visible):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    return {**env, "CUDA_VISIBLE_DEVICES": visible}


def _job(count, lock_dir, visible="0,1", timeout=0.0):
    """A process that takes `count` GPUs of `visible`, reports them and holds them."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(count), str(lock_dir), str(timeout)], env=_env(visible),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _done(proc):
    proc.stdin.close()
    proc.wait(timeout=30)


def test_concurrent_jobs_get_different_gpus_and_a_third_waits_then_fails(tmp_path):
    first, taken_first = _job(1, tmp_path)
    second, taken_second = _job(1, tmp_path)
    try:
        assert taken_first == "['0'] 0"
        assert taken_second == "['1'] 1"
        third = subprocess.run([sys.executable, "-c", HOLD, "1", str(tmp_path), "0.5"], input="",
                               env=_env("0,1"), capture_output=True, text=True,
                               timeout=60)
        assert third.returncode != 0 and "no 1 free GPU(s) of 0,1" in third.stderr
    finally:
        _done(first)
        _done(second)
    # Locks go with the process: once both ended, a two-GPU job gets both.
    both, taken_both = _job(2, tmp_path)
    _done(both)
    assert taken_both == "['0', '1'] 0,1"


def test_a_job_of_a_waiting_run_takes_a_gpu_as_soon_as_one_is_free(tmp_path):
    first, _ = _job(1, tmp_path, visible="3")
    waiting = subprocess.Popen([sys.executable, "-c", HOLD, "1", str(tmp_path), "30"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True,
                               env=_env("3"))
    _done(first)
    assert waiting.stdout.readline().strip() == "['3'] 3"
    _done(waiting)


def test_zero_gpus_hides_them_and_no_gpus_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert local_gpu_ids() == ["0", "1"]
    assert assign_gpus(0, lock_dir=tmp_path) == []
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    # Now none is visible: nothing to assign, nothing changed, no lock files.
    assert local_gpu_ids() == []
    assert assign_gpus(1, lock_dir=tmp_path / "locks") is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and not (tmp_path / "locks").exists()


def test_inside_a_slurm_job_slurm_assigns_the_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert assign_gpus(1, lock_dir=tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" and not any(tmp_path.iterdir())


@pytest.mark.skipif(bool(local_gpu_ids()), reason="this machine has GPUs")
def test_this_cpu_machine_has_no_gpus_to_assign(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    assert assign_gpus(1) is None
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before


def _runtime_in_subprocess(env_update: dict, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", code], env={**env, **env_update}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_onednn_is_switched_on_unless_the_user_chose():
    """TensorFlow enables oneDNN by itself only on CPUs with AVX-512 VNNI/AMX; elsewhere its
    fallback 3D convolutions are ~8x slower. Our processes ask for it, a user's choice wins."""
    code = ("import os; from unet.runtime import configure_tensorflow, onednn_enabled; configure_tensorflow(2); "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn_enabled())")
    assert _runtime_in_subprocess({}, code) == "1 True"
    assert _runtime_in_subprocess({"TF_ENABLE_ONEDNN_OPTS": "0"}, code) == "0 False"


def test_onednn_default_follows_tensorflows_rule(monkeypatch):
    from unet.runtime import onednn_enabled

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert not onednn_enabled(["sse4_2", "avx", "avx2", "fma"])  # an AVX2-only CPU: off by default
    expected_on = __import__("platform").machine() in ("x86_64", "AMD64")
    assert onednn_enabled(["avx2", "avx512f", "avx512_vnni"]) is expected_on
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert onednn_enabled(["avx2"])


def test_machine_info_names_the_cpu_and_its_extensions():
    from unet.runtime import VECTOR_EXTENSIONS, machine_info

    info = machine_info(3)
    assert info["threads"] == 3 and isinstance(info["onednn"], bool) and info["cpu"]
    assert set(info["vector_extensions"]) <= set(VECTOR_EXTENSIONS)
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith(("flags", "Features"))), [])
    assert info["vector_extensions"] == [name for name in VECTOR_EXTENSIONS if name in flags]
