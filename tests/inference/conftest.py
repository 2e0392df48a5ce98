import os
from types import SimpleNamespace

import pytest

# Keep TensorFlow's C++ start-up chatter out of the test output (must precede its import).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def preprocessed_demo(tmp_path_factory):
    """Demo (seed 0: 3 training cases stored LAS, LPS and RPI, 1 test case), planned for patch
    16^3 and filters 4-8-16 at a spacing that resamples every axis of every case (up and down),
    training cases preprocessed. Treat as read-only."""
    from unet.io.demo import generate_demo
    from unet.io.msd import load_dataset
    from unet.preprocessing.fingerprint import compute_fingerprint
    from unet.preprocessing.plan import Plan
    from unet.preprocessing.planning import make_plans
    from unet.preprocessing.preprocess import preprocess_case

    root = tmp_path_factory.mktemp("inference_demo")
    dataset = load_dataset(generate_demo(root / "raw", n_train=3, n_test=1, seed=0))
    fingerprint = compute_fingerprint(dataset, workers=1, seed=0)
    plans = make_plans(fingerprint, {"patch_size": [16, 16, 16], "filters": 4, "batch_size": 2,
                                     "spacing": [0.9, 1.1, 1.6]})
    plan = Plan.from_json(plans)
    for case in dataset.training:
        preprocess_case(case, plan, root / "preprocessed")
    return SimpleNamespace(dataset=dataset, plan=plan, plans=plans, preprocessed=root / "preprocessed",
                           root=root)


@pytest.fixture(scope="session")
def trained_results(preprocessed_demo, tmp_path_factory):
    """A run's results folder as `python -m unet predict -m` expects it: plans.json and
    fold_0/model.keras (an untrained network of the plan: predictions are arbitrary but
    deterministic), plus an unfinished fold_1 without a model. Treat as read-only."""
    import keras

    from unet.io.atomic import write_json
    from unet.model.network import build_from_plan

    results = tmp_path_factory.mktemp("trained_results") / "demo"
    write_json(results / "plans.json", preprocessed_demo.plans)
    keras.utils.set_random_seed(3)
    (results / "fold_0").mkdir(parents=True)
    build_from_plan(preprocessed_demo.plan).save(results / "fold_0" / "model.keras")
    (results / "fold_1").mkdir()
    return results
