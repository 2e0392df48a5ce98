"""Region probabilities -> label values (nnU-Net's regions_class_order), and predictions written
from a region model."""

import nibabel as nib
import numpy as np
import pytest

from unet.inference.predict import PredictSettings, ensemble_predictor, preprocessed_inputs, write_predictions
from unet.inference.regions import check_regions, labels_from_regions, region_order, trained_regions

BRATS = {"whole tumour": [1, 2, 4], "tumour core": [1, 4], "enhancing tumour": [4]}


def test_brats_regions_paint_edema_core_and_enhancing():
    # Painting order: WT paints 2 (its value no smaller region has), TC paints 1, ET paints 4.
    assert region_order(BRATS) == [(0, 2), (1, 1), (2, 4)]
    # Listed smallest first, the order still follows the set sizes.
    assert region_order(dict(reversed(list(BRATS.items())))) == [(2, 2), (1, 1), (0, 4)]
    # Voxels: background, edema, necrosis, enhancing, and TC/ET below 0.5 inside WT.
    probs = np.array([[0.1, 0.0, 0.0],
                      [0.9, 0.2, 0.1],
                      [0.8, 0.7, 0.3],
                      [0.95, 0.9, 0.6],
                      [0.6, 0.5, 0.9]], np.float32)  # ET > 0.5 wins, even with TC at exactly 0.5
    labels = labels_from_regions(probs, BRATS)
    np.testing.assert_array_equal(labels, [0, 2, 1, 4, 4])
    assert labels.dtype == np.uint8


def test_ideal_region_masks_give_back_the_label_map():
    rng = np.random.default_rng(0)
    label_map = rng.choice([0, 1, 2, 4], size=(5, 6, 4))
    masks = np.stack([np.isin(label_map, values) for values in BRATS.values()], -1).astype(np.float32)
    np.testing.assert_array_equal(labels_from_regions(masks, BRATS), label_map)


@pytest.mark.parametrize("regions", [
    {"a": [1, 2], "b": [2, 3]},                 # overlapping, neither inside the other
    {"whole": [1, 2, 3], "core": [3]},          # whole has two values no smaller region has
])
def test_non_nested_regions_are_refused(regions):
    with pytest.raises(ValueError, match="regions must be nested"):
        region_order(regions)
    with pytest.raises(ValueError, match="regions must be nested"):
        labels_from_regions(np.zeros((2, len(regions)), np.float32), regions)


def test_disjoint_regions_are_one_label_each():
    regions = {"left": [1], "right": [2]}
    probs = np.array([[0.9, 0.1], [0.2, 0.7], [0.3, 0.4]], np.float32)
    np.testing.assert_array_equal(labels_from_regions(probs, regions), [1, 2, 0])


def test_channel_count_must_match():
    with pytest.raises(ValueError, match="2 probability channels for 3 regions"):
        labels_from_regions(np.zeros((4, 2), np.float32), BRATS)


def test_resolve_and_check_regions():
    assert trained_regions(None, BRATS) is None
    assert trained_regions("dataset", {"wt": (1, 2)}) == {"wt": [1, 2]}
    assert trained_regions({"x": [4]}, BRATS) == {"x": [4]}
    with pytest.raises(ValueError, match="train.regions: 'dataset', but dataset.json declares no"):
        trained_regions("dataset", {})
    check_regions(BRATS, (0, 1, 2, 4))
    with pytest.raises(ValueError, match=r"region 'whole tumour' must list foreground label values.*\[1, 2, 4\]"):
        check_regions(BRATS, (0, 1, 2, 3))


class RegionModel:
    """Sigmoid of a per-voxel linear map of the channels: three region probabilities."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, np.float32)

    def predict_on_batch(self, batch):
        return 1.0 / (1.0 + np.exp(-(batch @ self.weights)))


def test_predictions_from_a_region_model(preprocessed_demo, tmp_path):
    # The written label map is the regions of the NPZ probabilities (raw grid) painted in order;
    # outside the crop box every region has probability 0 and the label is background.
    plan, dataset = preprocessed_demo.plan, preprocessed_demo.dataset
    regions = {"whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": [3]}
    ids = [case.id for case in dataset.training[:1]]
    model = RegionModel([[1.0, 0.5, -0.5], [0.5, 0.0, 1.0]])
    settings = PredictSettings(overlap=0.25, batch_size=4, save_probabilities=True, regions=regions)
    [path] = write_predictions(ensemble_predictor([model], tta=True), preprocessed_inputs(
        preprocessed_demo.preprocessed, ids), 1, tmp_path, plan.patch_size, plan.label_values, settings)
    labels = np.asarray(nib.load(str(path)).dataobj)
    with np.load(tmp_path / f"{ids[0]}.npz") as npz:
        assert set(npz.files) == {"probabilities", "label_values", "region_names", "region_membership"}
        probs = npz["probabilities"]
        assert list(npz["region_names"]) == list(regions)
        np.testing.assert_array_equal(npz["region_membership"], [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    assert probs.shape == (3,) + labels.shape
    np.testing.assert_array_equal(labels, labels_from_regions(np.moveaxis(probs, 0, -1), regions))
    assert len(np.unique(labels)) >= 3  # not trivially all background
    raw = nib.load(str(dataset.training[0].image))
    outside = ~np.asarray(raw.dataobj).any(-1)  # includes the cropped-away border
    assert (probs[:, outside] == 0).mean() > 0.5 and (labels[probs.max(0) == 0] == 0).all()
    with pytest.raises(ValueError, match="region 'x'"):
        write_predictions(ensemble_predictor([model]), iter([]), 0, tmp_path, plan.patch_size, plan.label_values,
                          PredictSettings(regions={"x": [7]}))
