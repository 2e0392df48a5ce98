import itertools
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from unet.inference.predict import (PredictSettings, ensemble_predictor, predict_cases, predict_fold,
                                    predict_test_set, preprocessed_inputs, raw_inputs, write_predictions)
from unet.io.atomic import write_json

# Keras' own saving converts TF variables with np.array(copy=False) under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class VoxelwiseModel:
    """Softmax of a per-voxel linear map of the channels: commutes with every mirroring."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, np.float32)
        self.inputs = []

    def predict_on_batch(self, batch):
        self.inputs.append(np.array(batch))
        return _softmax(batch @ self.weights)


class PositionModel(VoxelwiseModel):
    """Also depends on the position along the first spatial axis: not mirror-equivariant."""

    def predict_on_batch(self, batch):
        self.inputs.append(np.array(batch))
        ramp = np.linspace(-2, 2, batch.shape[1], dtype=np.float32)[None, :, None, None, None]
        return _softmax(batch @ self.weights + ramp * np.array([1.0, -1.0, 0.0], np.float32))


@pytest.fixture
def batch():
    return np.random.default_rng(0).normal(size=(2, 6, 5, 4, 2)).astype(np.float32)


def test_ensemble_averages_the_models(batch):
    a = VoxelwiseModel([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    b = VoxelwiseModel([[-1.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    probs = ensemble_predictor([a, b])(batch)
    expected = (_softmax(batch @ a.weights) + _softmax(batch @ b.weights)) / 2
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert len(a.inputs) == len(b.inputs) == 1


def assert_tta_unchanged_and_each_mirroring_seen_once(batch, mirrorings):
    """TTA of an equivariant model equals its plain prediction, and it saw each mirroring once."""
    model = VoxelwiseModel([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    plain = ensemble_predictor([model])(batch)
    model.inputs.clear()
    tta = ensemble_predictor([model], tta=True)(batch)
    np.testing.assert_allclose(tta, plain, rtol=1e-5, atol=1e-6)
    assert len(model.inputs) == len(mirrorings)
    for axes in mirrorings:
        flipped = np.flip(batch, axes) if axes else batch
        assert sum(np.array_equal(x, flipped) for x in model.inputs) == 1, axes


def test_tta_with_an_equivariant_model_changes_nothing(batch):
    # Eight calls, one per mirroring of the three spatial axes (batch and channel axes untouched).
    mirrorings = [axes for n in range(4) for axes in itertools.combinations((1, 2, 3), n)]
    assert_tta_unchanged_and_each_mirroring_seen_once(batch, mirrorings)


def test_tta_makes_any_model_mirror_equivariant(batch):
    # Averaged over all mirrorings, each flipped back, the prediction of a mirrored input is the
    # mirrored prediction, even for a model that is not equivariant itself.
    model = PositionModel([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    predict = ensemble_predictor([model], tta=True)
    probs = predict(batch)
    assert not np.allclose(probs, ensemble_predictor([model])(batch), atol=1e-3)
    for axes in [(1,), (2, 3), (1, 2, 3)]:
        np.testing.assert_allclose(predict(np.flip(batch, axes)), np.flip(probs, axes), rtol=1e-5, atol=1e-6)


def test_tta_on_two_dimensional_batches():
    # A 2D model's batch is (B, X, Y, C): only X and Y are mirrored (4 ways), never the channels.
    batch = np.random.default_rng(1).normal(size=(2, 6, 5, 2)).astype(np.float32)
    assert_tta_unchanged_and_each_mirroring_seen_once(batch, [(), (1,), (2,), (1, 2)])


@pytest.fixture(scope="module")
def saved_models(preprocessed_demo, tmp_path_factory):
    import keras

    from unet.model.network import build_from_plan

    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        path = tmp_path_factory.mktemp("models") / f"fold_{seed}.keras"
        build_from_plan(preprocessed_demo.plan).save(path)
        paths.append(path)
    return paths


def _check_prediction(path, image_path, label_values):
    raw = nib.load(str(image_path))
    written = nib.load(str(path))
    assert written.shape == raw.shape[:3]
    np.testing.assert_allclose(written.affine, raw.affine, atol=1e-5)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(raw.affine)
    values = np.asarray(written.dataobj)
    assert np.issubdtype(values.dtype, np.integer)
    assert set(np.unique(values)) <= set(label_values)
    # Outside the bounding box of the image's non-zero voxels (cropped away) is background.
    nonzero = np.asarray(raw.dataobj).reshape(raw.shape[:3] + (-1,)).any(-1)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(nonzero.any(axis=others))
        outside = np.moveaxis(values, axis, 0)
        assert not outside[:hits[0]].any() and not outside[hits[-1] + 1:].any(), axis


def test_predict_validation_cases(preprocessed_demo, saved_models, tmp_path):
    plan, dataset = preprocessed_demo.plan, preprocessed_demo.dataset
    ids = [case.id for case in dataset.training]
    settings = PredictSettings(overlap=0.25, batch_size=8)
    written = predict_cases(saved_models[:1], preprocessed_inputs(preprocessed_demo.preprocessed, ids),
                            len(ids), tmp_path / "fold_0", plan.patch_size, plan.label_values, settings)
    assert written == [tmp_path / "fold_0" / f"{cid}.nii.gz" for cid in ids]
    for path, case in zip(written, dataset.training):
        _check_prediction(path, case.image, plan.label_values)
    assert not list((tmp_path / "fold_0").glob("*.npz"))  # save_probabilities is off by default


def test_predict_test_cases_with_an_ensemble(preprocessed_demo, saved_models, tmp_path):
    plan, dataset = preprocessed_demo.plan, preprocessed_demo.dataset
    settings = PredictSettings(overlap=0.0, batch_size=8, blend="constant", tta=True)
    written = predict_cases(saved_models, raw_inputs(dataset.test, plan), len(dataset.test),
                            tmp_path / "test", plan.patch_size, plan.label_values, settings)
    assert [p.name for p in written] == [f"{case.id}.nii.gz" for case in dataset.test]
    _check_prediction(written[0], dataset.test[0].image, plan.label_values)


def test_a_run_predicts_with_the_regions_its_models_were_trained_with(preprocessed_demo, tmp_path, describe):
    # The regions come from the models' model.json (the train stage's record), never from config.
    from unet.inference.model_info import load_model_set

    write_json(tmp_path / "plans.json", preprocessed_demo.plans)
    for k, regions in ((0, {"whole": [1, 2], "core": [2]}), (1, {"whole": [1, 2], "core": [2]}), (2, None)):
        (tmp_path / f"fold_{k}").mkdir()
        describe(tmp_path / f"fold_{k}", tmp_path / "plans.json", regions)
    models = load_model_set(tmp_path / "plans.json", [tmp_path / f"fold_{k}" / "model.keras" for k in (0, 1)])
    settings = PredictSettings.for_models({"overlap": 0.25, "tta": True, "checkpoint": "best"}, models)
    assert settings == PredictSettings(overlap=0.25, tta=True, regions={"whole": [1, 2], "core": [2]},
                                       background_outside_mask=preprocessed_demo.plan.nonzero_mask,
                                       checkpoint="best", image_channels=preprocessed_demo.plan.num_channels)
    unlabelled = load_model_set(tmp_path / "plans.json", [tmp_path / "fold_2" / "model.keras"])
    assert PredictSettings.for_models({}, unlabelled).regions is None
    with pytest.raises(ValueError, match="config predict: unknown keys"):
        PredictSettings.for_models({"overlapp": 0.5}, unlabelled)


def test_the_prediction_rules_read_the_runs_files(preprocessed_demo, saved_models, tmp_path, describe):
    import shutil

    dataset = preprocessed_demo.dataset
    write_json(tmp_path / "plans.json", preprocessed_demo.plans)
    models = []
    for k, saved in enumerate(saved_models):
        models.append(tmp_path / f"fold_{k}" / "model.keras")
        models[-1].parent.mkdir()
        shutil.copy(saved, models[-1])
        describe(models[-1].parent, tmp_path / "plans.json")
    ids = [case.id for case in dataset.training]
    write_json(tmp_path / "splits.json", [{"train": ids[1:], "val": ids[:1]}, {"train": ids[:1], "val": ids[1:]}])
    write_json(tmp_path / "dataset.ok", {"regions": {}})  # the dataset's format: NIfTI (no file_ending)
    run = {"plans": tmp_path / "plans.json", "section": {"overlap": 0.25, "batch_size": 8}}
    written = predict_fold(models[0], tmp_path / "splits.json", 1, preprocessed_demo.preprocessed,
                           tmp_path / "fold_1", dataset_ok=tmp_path / "dataset.ok", **run)
    assert written == [tmp_path / "fold_1" / f"{cid}.nii.gz" for cid in ids[1:]]
    written = predict_test_set(models, dataset.root, tmp_path / "test", **run)
    assert written == [tmp_path / "test" / f"{case.id}.nii.gz" for case in dataset.test]
    _check_prediction(written[0], dataset.test[0].image, preprocessed_demo.plan.label_values)


def _nonzero_box(mask):
    """Boolean mask of the bounding box of `mask`'s True voxels."""
    box = np.zeros_like(mask)
    hits = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
            for axis in range(mask.ndim)]
    box[tuple(slice(h[0], h[-1] + 1) for h in hits)] = True
    return box


def test_save_probabilities_round_trip(preprocessed_demo, tmp_path):
    # The NPZ holds (K, X, Y, Z) probabilities in the raw file's grid and voxel order: their
    # argmax, mapped to the label values, is exactly the written NIfTI label map.
    plan, dataset = preprocessed_demo.plan, preprocessed_demo.dataset
    ids = [case.id for case in dataset.training]
    label_values = (0, 10, 20, 40)
    model = VoxelwiseModel([[2.0, 0.0, -1.0, 1.0], [0.5, 2.0, 0.0, -2.0]])
    settings = PredictSettings(overlap=0.25, batch_size=4, save_probabilities=True)
    inputs = preprocessed_inputs(preprocessed_demo.preprocessed, ids)
    written = write_predictions(ensemble_predictor([model]), inputs, len(ids), tmp_path, plan.patch_size,
                                label_values, settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{cid}.nii.gz" for cid in ids] + [f"{cid}.npz" for cid in ids])  # no temporary leftovers
    for path, case in zip(written, dataset.training):
        labels = np.asarray(nib.load(str(path)).dataobj)
        raw = nib.load(str(case.image))
        with np.load(tmp_path / f"{case.id}.npz") as npz:
            assert set(npz.files) == {"probabilities", "label_values"}
            probs, values = npz["probabilities"], npz["label_values"]
        np.testing.assert_array_equal(values, label_values)
        assert probs.dtype == np.float32 and probs.shape == (len(label_values),) + raw.shape[:3]
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
        assert probs.min() >= 0
        np.testing.assert_array_equal(values[probs.argmax(0)], labels)
        assert len(np.unique(labels)) > 1  # the check above is not trivially about background
        # Outside the bounding box of the image's non-zero voxels (cropped away before
        # prediction) the background has probability 1.
        inside = _nonzero_box(np.asarray(raw.dataobj).any(-1))
        assert (~inside).any()
        np.testing.assert_array_equal(probs[0][~inside], 1.0)
        assert (probs[0][inside] < 1).mean() > 0.5


def test_region_and_label_models_are_not_mixed_up(preprocessed_demo, saved_models, tmp_path):
    # A softmax label model predicted as if trained on regions, and a region model (sigmoid per
    # region) predicted without its regions, stop before any case is written, naming the model.
    import keras

    from unet.model.network import build_from_plan

    plan, case_ids = preprocessed_demo.plan, [preprocessed_demo.dataset.training[0].id]
    regions = {"whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": [3]}
    region_model = tmp_path / "regions.keras"
    build_from_plan(plan, num_outputs=len(regions), activation="sigmoid").save(region_model)

    def predict(model_path, regions, out):
        return predict_cases([model_path], preprocessed_inputs(preprocessed_demo.preprocessed, case_ids),
                             len(case_ids), tmp_path / out, plan.patch_size, plan.label_values,
                             PredictSettings(regions=regions))

    with pytest.raises(ValueError, match=r"regions.keras: the model outputs 3 sigmoid channel\(s\)"):
        predict(region_model, None, "a")
    with pytest.raises(ValueError, match=r"fold_1.keras: predicting with 3 region\(s\)"):
        predict(saved_models[0], regions, "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # With its regions, the region model paints label values of the dataset.
    written = predict(region_model, regions, "c")
    values = np.unique(np.asarray(nib.load(str(written[0])).dataobj))
    assert set(values.tolist()) <= set(plan.label_values)


def test_background_outside_the_nonzero_mask():
    from unet.inference.predict import background_outside

    image = np.zeros((4, 3, 2, 2), np.float32)
    image[1:3, 1, :, 1] = 0.5  # inside: non-zero in one channel suffices
    probs = np.full((4, 3, 2, 3), 1 / 3, np.float32)
    labels = background_outside(probs, image, regions=False)
    inside = np.zeros((4, 3, 2), bool)
    inside[1:3, 1, :] = True
    np.testing.assert_array_equal(labels[inside], probs[inside])
    np.testing.assert_array_equal(labels[~inside], np.tile([1.0, 0.0, 0.0], (int((~inside).sum()), 1)))
    regions = background_outside(probs, image, regions=True)
    assert not regions[~inside].any() and np.array_equal(regions[inside], probs[inside])
    assert np.all(probs == 1 / 3)  # the input is left alone


# -- a 2d configuration: a 2D network over every slice ----------------------------------------------

@pytest.fixture(scope="module")
def run_2d(preprocessed_demo, tmp_path_factory, describe):
    """plans.json whose 2d configuration is a small 2D network, and an untrained model of it."""
    import dataclasses

    import keras

    from unet.model.network import build_from_plan
    from unet.preprocessing.plan import Plan

    plans = preprocessed_demo.plans
    plan = dataclasses.replace(Plan.from_plans(plans, "2d"), patch_size=(24, 16), filters=(4, 8),
                               strides=((1, 1), (2, 2)), kernels=((3, 3),) * 2)
    root = tmp_path_factory.mktemp("run_2d")
    write_json(root / "plans.json", {**plans, "configurations": {**plans["configurations"], "2d": plan.to_json()}})
    write_json(root / "dataset.ok", {"regions": {}})
    keras.utils.set_random_seed(5)
    build_from_plan(plan).save(root / "model.keras")
    describe(root, root / "plans.json", configuration="2d")
    return SimpleNamespace(root=root, plan=plan, model=root / "model.keras")


def test_a_2d_configuration_predicts_every_slice_and_restores_to_the_raw_grid(preprocessed_demo, run_2d, tmp_path):
    """The rules with configuration 2d: the validation cases (from the shared 3D preprocessed
    files) and the test set (preprocessed as 3d_fullres) come out in their raw grids, and the
    probabilities are those of the 2D sliding window applied slice by slice by hand, restored."""
    import keras

    from unet.inference.predict import background_outside
    from unet.inference.restore import restore_probabilities
    from unet.inference.sliding_window import sliding_window_inference
    from unet.preprocessing.geometry import CaseGeometry

    plan, dataset = run_2d.plan, preprocessed_demo.dataset
    assert plan.slice_axis == 2 and preprocessed_demo.plan.spacing[:2] == plan.spacing
    ids = [case.id for case in dataset.training]
    write_json(tmp_path / "splits.json", [{"train": ids[1:], "val": ids[:1]}, {"train": ids[:1], "val": ids[1:]}])
    section = {"overlap": 0.5, "batch_size": 6, "tta": True, "save_probabilities": True}
    run = {"plans": run_2d.root / "plans.json", "section": section}
    written = predict_fold(run_2d.model, tmp_path / "splits.json", 0, preprocessed_demo.preprocessed,
                           tmp_path / "fold_0", dataset_ok=run_2d.root / "dataset.ok", **run)
    assert written == [tmp_path / "fold_0" / f"{ids[0]}.nii.gz"]
    _check_prediction(written[0], dataset.training[0].image, plan.label_values)
    test = predict_test_set([run_2d.model], dataset.root, tmp_path / "test", **run)
    assert [p.name for p in test] == [f"{case.id}.nii.gz" for case in dataset.test]
    _check_prediction(test[0], dataset.test[0].image, plan.label_values)

    predictor = ensemble_predictor([keras.saving.load_model(str(run_2d.model), compile=False)], tta=True)
    image = np.load(preprocessed_demo.preprocessed / f"{ids[0]}.npy")
    by_hand = np.stack([sliding_window_inference(image[:, :, z], predictor, plan.patch_size, overlap=0.5)
                        for z in range(image.shape[2])], axis=2)
    by_hand = background_outside(by_hand, image, regions=False)  # the demo's plan z-scores in the mask
    geometry = CaseGeometry.load(preprocessed_demo.preprocessed / f"{ids[0]}.json")
    with np.load(tmp_path / "fold_0" / f"{ids[0]}.npz") as npz:
        np.testing.assert_allclose(npz["probabilities"], restore_probabilities(by_hand, geometry), atol=1e-5)


def test_a_2d_plan_takes_its_slices_from_the_fullres_data_only_at_the_same_spacing(run_2d, tmp_path):
    import dataclasses

    from unet.inference.predict import preprocessing_plan
    from unet.io.atomic import read_json
    from unet.preprocessing.plan import Plan

    plans = read_json(run_2d.root / "plans.json")
    assert preprocessing_plan(run_2d.root / "plans.json", run_2d.plan) == Plan.from_json(plans)
    fullres = Plan.from_json(plans)
    assert preprocessing_plan(run_2d.root / "plans.json", fullres) is fullres
    coarser = dataclasses.replace(run_2d.plan, spacing=(2.0, 2.0))
    with pytest.raises(ValueError, match="not the 3d_fullres spacing"):
        preprocessing_plan(run_2d.root / "plans.json", coarser)
