import pytest

from unet.io.demo import generate_demo
from unet.io.msd import load_dataset
from unet.preprocessing.fingerprint import compute_fingerprint


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """Three training cases and one test case; treat as read-only (copy before editing)."""
    return generate_demo(tmp_path_factory.mktemp("demo"), n_train=3, n_test=1, seed=0)


@pytest.fixture(scope="session")
def demo_dataset(demo_root):
    return load_dataset(demo_root)


@pytest.fixture(scope="session")
def demo_fingerprint(demo_dataset):
    return compute_fingerprint(demo_dataset, workers=1, seed=0)
