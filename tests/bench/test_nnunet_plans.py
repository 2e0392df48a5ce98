"""The conversions around nnU-Net's planner (its run: tests/preprocessing/test_configurations.py)."""

from unet.bench.nnunet_plans import configurations_in_our_axes, nnunet_dataset_json, nnunet_fingerprint

FINGERPRINT = {
    "dataset": "toy", "modalities": ["T2", "ADC"], "labels": {"0": "background", "2": "zone", "1": "lesion"},
    "cases": [{"id": f"c{i}", "spacing": [4.0, 0.6, 0.5], "shape": [30, 300, 200], "shape_after_crop": [28, 290, 190],
               "crop_fraction": f, "label_values": [0, 1, 2]} for i, f in enumerate((0.5, 0.9, 0.7))],
    "intensity": [{"mean": 1.0, "std": 2.0, "median": 1.5, "min": 0.0, "max": 9.0, "percentile_00_5": 0.1,
                   "percentile_99_5": 8.0}] * 2,
}


def test_the_fingerprint_in_nnunets_axes_and_names():
    fp = nnunet_fingerprint(FINGERPRINT)
    assert fp["spacings"] == [[0.5, 0.6, 4.0]] * 3 and fp["shapes_after_crop"] == [[190, 290, 28]] * 3
    assert fp["median_relative_size_after_cropping"] == 0.7
    assert fp["foreground_intensity_properties_per_channel"]["1"]["percentile_99_5"] == 8.0
    dataset = nnunet_dataset_json(FINGERPRINT)
    assert dataset["labels"] == {"background": 0, "lesion": 1, "zone": 2}
    assert dataset["channel_names"] == {"0": "T2", "1": "ADC"} and dataset["numTraining"] == 3


def _config(spacing, patch, strides, kernels, **extra):
    return {"spacing": spacing, "patch_size": patch, "median_image_size_in_voxels": patch, "batch_size": 2,
            "architecture": {"arch_kwargs": {"features_per_stage": [32, 64], "strides": strides,
                                             "kernel_sizes": kernels}}, **extra}


def test_configurations_back_in_our_axes():
    # Our x is the coarse axis: nnU-Net (axes z, y, x = our 2, 1, 0) transposes its x (2) first:
    # its configurations' axes are our x, z, y; its 2d holds our z, y.
    plans = {"transpose_forward": [2, 0, 1], "configurations": {
        "2d": _config([0.5, 0.6], [192, 320], [[1, 1], [2, 1]], [[3, 3], [3, 1]]),
        "3d_fullres": _config([4.0, 0.5, 0.6], [20, 192, 320], [[1, 1, 1], [1, 2, 1]], [[1, 3, 3], [3, 3, 1]]),
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}}
    ours = configurations_in_our_axes(plans)
    assert ours["3d_fullres"]["spacing"] == [4.0, 0.6, 0.5] and ours["3d_fullres"]["patch_size"] == [20, 320, 192]
    assert ours["3d_fullres"]["strides"] == [[1, 1, 1], [1, 1, 2]] and ours["3d_fullres"]["kernels"][1] == [3, 1, 3]
    assert ours["2d"]["slice_axis"] == 0
    assert ours["2d"]["spacing"] == [0.6, 0.5] and ours["2d"]["patch_size"] == [320, 192]
    assert ours["2d"]["strides"] == [[1, 1], [1, 2]] and ours["2d"]["kernels"] == [[3, 3], [1, 3]]
    assert ours["3d_cascade_fullres"] == {**ours["3d_fullres"], "previous_stage": "3d_lowres"}
