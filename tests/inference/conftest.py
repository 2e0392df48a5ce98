import os
import shutil
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
    """A run's results folder as `python -m unet predict -m` expects it: plans.json,
    fold_0/model.keras (an untrained network of the plan: predictions are arbitrary but
    deterministic) and its model.json (no regions), plus an unfinished fold_1 without a model.
    Treat as read-only."""
    import keras

    from unet.io.atomic import write_json
    from unet.model.network import build_from_plan

    results = tmp_path_factory.mktemp("trained_results") / "demo"
    write_json(results / "plans.json", preprocessed_demo.plans)
    keras.utils.set_random_seed(3)
    (results / "fold_0").mkdir(parents=True)
    build_from_plan(preprocessed_demo.plan).save(results / "fold_0" / "model.keras")
    describe_fold(results / "fold_0", results / "plans.json")
    (results / "fold_1").mkdir()
    return results


def describe_fold(fold_dir, plans, regions=None, configuration="3d_fullres"):
    """The model.json the train stage writes beside a fold's networks, for networks made here."""
    from unet.inference.model_info import write_model_info

    return write_model_info(fold_dir, plans=plans, regions=regions, train={},
                            rows=[{"epoch": 0, "ema_val_dice": 0.5}], configuration=configuration)


@pytest.fixture(scope="session")
def describe():
    """`describe_fold(fold_dir, plans, regions=None, configuration="3d_fullres")`: write a model.json
    for a network made in a test."""
    return describe_fold


def _train_run(preprocessed_demo, results, folds, train, best_first=False):
    """`results` as the workflow leaves it after training `folds` with config `train` (through the
    train stage's own code, TrainJob and train_worker): plans.json, splits.json and, per fold,
    model.keras, model_best.keras and model.json (and preprocessed/, shards/). With `best_first`, the validation Dice is fixed
    to fall after the first epoch, so that the best checkpoint (epoch 0) is not the final one."""
    from unet.data.shards import write_shards_and_splits
    from unet.io.atomic import write_json
    from unet.training.loop import FoldTrainer
    from unet.training.multinode import TrainJob, train_worker

    write_json(results / "plans.json", preprocessed_demo.plans)
    shutil.copytree(preprocessed_demo.preprocessed, results / "preprocessed")
    ids = [case.id for case in preprocessed_demo.dataset.training]
    write_shards_and_splits(results / "preprocessed", ids, results / "shards", results / "splits.json", 2)
    with pytest.MonkeyPatch.context() as patch:
        if best_first:
            patch.setattr(FoldTrainer, "_validate",
                          lambda self, *args: dict.fromkeys(self.labels, 0.9 if self.epoch.numpy() == 0 else 0.1))
        for fold in folds:
            train_worker(TrainJob.for_fold(results / "splits.json", fold, plans=results / "plans.json",
                                           shards=results / "shards", model=results / f"fold_{fold}" / "model.keras",
                                           curves=None, config=train, dataset_ok=results / "dataset.ok"))
    return results


SHORT_TRAINING = {"epochs": 2, "steps_per_epoch": 3, "validation_patches": 2, "learning_rate": 0.01}


@pytest.fixture(scope="session")
def trained_run(preprocessed_demo, tmp_path_factory):
    """A run trained for real (briefly) on the demo: folds 0 and 1 of a 2-fold split, softmax over
    the labels, each fold's best checkpoint at epoch 0 of 2. Treat as read-only."""
    return _train_run(preprocessed_demo, tmp_path_factory.mktemp("trained_run") / "demo", (0, 1),
                      SHORT_TRAINING, best_first=True)


@pytest.fixture(scope="session")
def region_run(preprocessed_demo, tmp_path_factory):
    """A run whose fold 0 was trained with explicit regions (train.regions: {core: [2, 3],
    enhancing: [3]}), not dataset.json's three. Treat as read-only."""
    return _train_run(preprocessed_demo, tmp_path_factory.mktemp("region_run") / "demo", (0,),
                      {**SHORT_TRAINING, "regions": {"core": [2, 3], "enhancing": [3]}})
