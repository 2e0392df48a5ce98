"""The 2d configuration end to end on the demo, through the workflow's entry points: a TrainJob of
configuration 2d trains a 2D network on slices of the 3D shards (train_worker), and predict_fold
with configuration 2d predicts the validation cases slice by slice into NIfTI files in the raw
grid. The network learned: the validation cases' mean foreground Dice, scored against the raw
labels, is one an untrained or broken 2D model does not reach."""

from __future__ import annotations

import dataclasses
import json
import time

import nibabel as nib
import numpy as np
import pytest

from unet.inference.predict import predict_fold
from unet.io.atomic import write_json
from unet.preprocessing.plan import Plan
from unet.training.multinode import TrainJob, train_worker
from unet.training.settings import TrainSettings

# Keras' own saving converts TF variables with np.array(copy=False) under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

EPOCHS, STEPS = 10, 25


def small_2d(plans: dict) -> dict:
    """plans.json content whose 2d configuration is a small network: patch 32 x 32, filters 8-16-32."""
    plan = dataclasses.replace(Plan.from_plans(plans, "2d"), patch_size=(32, 32), batch_size=8, filters=(8, 16, 32),
                               strides=((1, 1), (2, 2), (2, 2)), kernels=((3, 3),) * 3)
    return {**plans, "configurations": {**plans["configurations"], "2d": plan.to_json()}}


def dice_per_label(predicted: np.ndarray, truth: np.ndarray, labels) -> list[float]:
    return [float(2 * np.sum((predicted == v) & (truth == v)) / max(np.sum(predicted == v) + np.sum(truth == v), 1))
            for v in labels]


@pytest.fixture(scope="module")
def run_2d(demo_workspace, tmp_path_factory):
    """A trained 2d fold 0 and its validation predictions, as the workflow's rules would make them."""
    root = tmp_path_factory.mktemp("run_2d")
    write_json(root / "plans.json", small_2d(demo_workspace.plans))
    write_json(root / "dataset.ok", {"regions": {}})
    ids = demo_workspace.train_ids + demo_workspace.val_ids
    write_json(root / "splits.json", [{"train": demo_workspace.train_ids, "val": demo_workspace.val_ids},
                                      {"train": demo_workspace.val_ids, "val": demo_workspace.train_ids}])
    fold = root / "2d" / "fold_0"
    settings = TrainSettings(epochs=EPOCHS, steps_per_epoch=STEPS, validation_patches=16, seed=0)
    job = TrainJob.for_fold(root / "splits.json", 0, plans=root / "plans.json", shards=demo_workspace.shard_dir,
                            model=fold / "model.keras", curves=None, config=dataclasses.asdict(settings),
                            dataset_ok=root / "dataset.ok", configuration="2d")
    assert TrainJob.load(job.save(root / "job.json")) == job  # the configuration travels to other workers
    start = time.perf_counter()
    train_worker(job)
    trained = time.perf_counter() - start
    written = predict_fold(fold / "model.keras", root / "splits.json", 0, demo_workspace.preprocessed,
                           root / "2d" / "predictions", plans=root / "plans.json", dataset_ok=root / "dataset.ok",
                           section={"batch_size": 8, "tta": True})
    print(f"2d: {EPOCHS} x {STEPS} steps trained in {trained:.0f} s, predicted in "
          f"{time.perf_counter() - start - trained:.0f} s; {len(ids)} cases")
    return root, fold, written


def test_the_2d_network_trains_on_slices(run_2d, demo_workspace):
    _, fold, _ = run_2d
    import keras

    model = keras.saving.load_model(str(fold / "model.keras"), compile=False)
    assert len(model.inputs[0].shape) == 4  # (B, a, b, C): a 2D network
    rows = [json.loads(line) for line in (fold / "training_log.jsonl").read_text().splitlines()]
    assert len(rows) == EPOCHS and rows[-1]["loss"] < rows[0]["loss"]


def test_2d_predictions_are_raw_grid_niftis_and_learned(run_2d, demo_workspace):
    _, _, written = run_2d
    cases = {case.id: case for case in demo_workspace.dataset.training}
    assert [p.name for p in written] == [f"{cid}.nii.gz" for cid in demo_workspace.val_ids]
    labels = [v for v in demo_workspace.plan.label_values if v != 0]
    scores = []
    for path, cid in zip(written, demo_workspace.val_ids):
        raw, predicted = nib.load(str(cases[cid].image)), nib.load(str(path))
        assert predicted.shape == raw.shape[:3]
        np.testing.assert_allclose(predicted.affine, raw.affine, atol=1e-5)
        truth = np.asarray(nib.load(str(cases[cid].label)).dataobj)
        scores.append(dice_per_label(np.asarray(predicted.dataobj), truth, labels))
    edema, core, enhancing = np.mean(scores, axis=0)
    print(f"2d validation Dice: edema {edema:.3f}, non-enhancing {core:.3f}, enhancing {enhancing:.3f}, "
          f"mean {np.mean(scores):.3f}")
    # Measured: edema 0.83, enhancing 0.81, mean 0.55 (the non-enhancing core, about 1% of the
    # foreground voxels, is not found yet in 250 steps: 0). Untrained networks of this plan (two
    # seeds) score at most 0.15, 0.05, 0.015 and a mean of 0.06.
    assert edema > 0.6 and enhancing > 0.6
    assert np.mean(scores) > 0.4
