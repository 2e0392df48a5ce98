"""Predicting with a cascade's (3d_cascade_fullres) models: each case's image reaches the network
with the previous stage's segmentation as one-hot channels, for validation cases (from
write_previous_stage's files) and test cases (from the lowres test predictions, brought onto the
grid in memory). The network here copies its previous stage channels to its output, so what it
predicts is what it was given: the previous stage's segmentation, back in the raw grid."""

from __future__ import annotations

import dataclasses
import shutil

import nibabel as nib
import numpy as np
import pytest

from unet.inference.errors import InputError
from unet.inference.predict import predict_fold, predict_test_set
from unet.io.atomic import write_json
from unet.io.images import load_image, load_label, save_image
from unet.preprocessing.cascade import write_previous_stage
from unet.preprocessing.plan import Plan

# Keras' own saving converts TF variables with np.array(copy=False) under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CASCADE = "3d_cascade_fullres"


def copying_model(plan: Plan):
    """A network whose softmax picks, at each voxel, the class of its previous stage channels
    (background where none is set), whatever the image says."""
    import keras

    k = plan.num_classes
    inputs = keras.Input((None, None, None, plan.input_channels), name="image")
    head = keras.layers.Conv3D(k, 1, name="head")
    logits = head(inputs)
    kernel = np.zeros((1, 1, 1, plan.input_channels, k), np.float32)
    for j in range(1, k):
        kernel[0, 0, 0, plan.num_channels + j - 1, j] = 10.0   # class j's channel votes for it
        kernel[0, 0, 0, plan.num_channels + j - 1, 0] = -10.0  # ... and against the background
    head.set_weights([kernel, np.array([5.0] + [0.0] * (k - 1), np.float32)])
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits))


def dice(a, b):
    return 2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1)


@pytest.fixture(scope="module")
def cascade_run(preprocessed_demo, tmp_path_factory, describe):
    """A run of the demo whose plans.json holds a cascade configuration, and its fold 0, the
    copying network, described as trained on it."""
    root = tmp_path_factory.mktemp("cascade_run")
    plan = dataclasses.replace(preprocessed_demo.plan, configuration=CASCADE, previous_stage="3d_lowres")
    plans = preprocessed_demo.plans
    configurations = {**plans.get("configurations", {}), CASCADE: plan.to_json()}
    write_json(root / "plans.json", {**plans, "configurations": configurations})
    assert Plan.load(root / "plans.json", CASCADE) == plan and plan.input_channels == 2 + 3
    (root / CASCADE / "fold_0").mkdir(parents=True)
    copying_model(plan).save(root / CASCADE / "fold_0" / "model.keras")
    describe(root / CASCADE / "fold_0", root / "plans.json", configuration=CASCADE)
    ids = [case.id for case in preprocessed_demo.dataset.training]
    write_json(root / "splits.json", [{"train": ids[:1], "val": ids[1:]}])
    write_json(root / "dataset.ok", {"regions": {}})
    return root, plan


def test_validation_cases_get_their_previous_stage_channels(preprocessed_demo, cascade_run, tmp_path):
    root, plan = cascade_run
    cases = preprocessed_demo.dataset.training[1:]
    # The lowres fold's predictions: here the raw labels themselves.
    for case in cases:
        shutil.copy(case.label, tmp_path / f"{case.id}.nii.gz")
    write_previous_stage([tmp_path], preprocessed_demo.preprocessed, [c.id for c in cases], root / "previous", plan)
    written = predict_fold(root / CASCADE / "fold_0" / "model.keras", root / "splits.json", 0,
                           preprocessed_demo.preprocessed, root / "predictions", plans=root / "plans.json",
                           dataset_ok=root / "dataset.ok", section={"batch_size": 8}, previous_dir=root / "previous")
    assert [p.name for p in written] == [f"{c.id}.nii.gz" for c in cases]
    for path, case in zip(written, cases):
        predicted, truth = np.asarray(nib.load(str(path)).dataobj), load_label(case.label)[0]
        # The previous stage went to the preprocessed grid and the prediction back: only borders move.
        for value in plan.label_values[1:]:
            assert dice(predicted == value, truth == value) > 0.85, (case.id, value)


def test_test_cases_get_the_previous_stage_s_test_predictions(preprocessed_demo, cascade_run, tmp_path):
    root, plan = cascade_run
    case = preprocessed_demo.dataset.test[0]
    image, affine = load_image(case.image)
    # A lowres "prediction" unlike anything in the image: a box of label 2 beside a box of label 3.
    previous = np.zeros(image.shape[:3], np.uint8)
    x, y, z = (n // 2 for n in image.shape[:3])
    previous[x - 8:x, y - 6:y + 6, z - 5:z + 5] = 2
    previous[x:x + 8, y - 6:y + 6, z - 5:z + 5] = 3
    save_image(tmp_path / "lowres" / f"{case.id}.nii.gz", previous, affine)
    written = predict_test_set([root / CASCADE / "fold_0" / "model.keras"], preprocessed_demo.dataset.root,
                               tmp_path / "test", plans=root / "plans.json", section={"batch_size": 8},
                               previous_predictions=tmp_path / "lowres")
    predicted = np.asarray(nib.load(str(written[0])).dataobj)
    for value in (2, 3):
        assert dice(predicted == value, previous == value) > 0.85
    assert not np.any(predicted == 1)


def test_a_cascade_needs_its_previous_stage_and_others_take_none(preprocessed_demo, cascade_run, tmp_path, describe):
    root, _ = cascade_run
    model = root / CASCADE / "fold_0" / "model.keras"
    common = dict(plans=root / "plans.json", section={})
    with pytest.raises(InputError, match=f"configuration {CASCADE}, which refines 3d_lowres: .*previous_dir"):
        predict_fold(model, root / "splits.json", 0, preprocessed_demo.preprocessed, tmp_path,
                     dataset_ok=root / "dataset.ok",
                     **common)
    with pytest.raises(InputError, match=f"configuration {CASCADE}, which refines 3d_lowres: .*previous_predictions"):
        predict_test_set([model], preprocessed_demo.dataset.root, tmp_path, **common)
    (tmp_path / "fold_0").mkdir()
    describe(tmp_path / "fold_0", root / "plans.json")  # a 3d_fullres model
    with pytest.raises(InputError, match="previous_predictions given, but the models' configuration 3d_fullres"):
        predict_test_set([tmp_path / "fold_0" / "model.keras"], preprocessed_demo.dataset.root, tmp_path / "out",
                         previous_predictions=tmp_path, **common)

