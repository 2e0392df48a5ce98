"""Keeping the largest connected component: the operation postprocessing.json lists."""

import numpy as np
import pytest

from unet.inference.postprocess import (PostprocessingError, apply_postprocessing, keep_largest_component,
                                        largest_component, load_postprocessing, postprocess_folder)
from unet.io.atomic import write_json
from unet.io.images import load_label, save_image
from unet.io.nifti import save_nifti


def test_components_touching_at_a_corner_are_one_component():
    # Full connectivity, as nnU-Net (skimage's label): a corner neighbour belongs to the component.
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[0:2, 0:2, 0:2] = True
    mask[2, 2, 2] = True          # touches (1, 1, 1) at a corner only
    mask[4, 4, 0] = True          # apart
    kept = largest_component(mask)
    assert kept[2, 2, 2] and not kept[4, 4, 0] and kept.sum() == 9


def test_ties_keep_every_largest_component():
    mask = np.zeros((7, 3, 3), dtype=bool)
    mask[0:2] = True
    mask[5:7] = True
    np.testing.assert_array_equal(largest_component(mask), mask)


def test_keep_largest_component_joins_the_labels_and_touches_nothing_else():
    seg = np.zeros((10, 4, 4), dtype=np.uint8)
    seg[0:3] = 1
    seg[3:4] = 2       # touches label 1: with [1, 2] one component
    seg[6:7] = 2       # apart
    seg[8:10] = 3      # another label, untouched
    out = keep_largest_component(seg, [1, 2])
    assert (out[0:4] == seg[0:4]).all() and (out[6] == 0).all() and (out[8:10] == 3).all()
    out = keep_largest_component(seg, [2])
    assert (out[3] == 2).all() and (out[6] == 2).all()  # equal parts: both kept
    assert (seg[6] == 2).all()  # the input is left alone


def test_apply_postprocessing_in_order_and_in_2d():
    seg = np.zeros((8, 8), dtype=np.int16)
    seg[0:3, 0:3] = 1
    seg[6:8, 6:8] = 2
    seg[7, 0] = 2
    spec = {"apply": [{"operation": "keep_largest_component", "labels": [2]}]}
    out = apply_postprocessing(seg, spec)
    assert out[7, 0] == 0 and out[6:8, 6:8].min() == 2 and out.dtype == np.int16
    np.testing.assert_array_equal(apply_postprocessing(seg, {"apply": []}), seg)
    # All foreground first: label 2 is the smaller component and goes.
    spec["apply"].insert(0, {"operation": "keep_largest_component", "labels": [1, 2]})
    assert set(np.unique(apply_postprocessing(seg, spec))) == {0, 1}


@pytest.mark.parametrize("step", [{"operation": "dilate", "labels": [1]},
                                  {"operation": "keep_largest_component", "labels": []},
                                  {"operation": "keep_largest_component", "labels": [0]}])
def test_unknown_steps_are_refused_naming_the_file(tmp_path, step):
    write_json(tmp_path / "postprocessing.json", {"apply": [step]})
    with pytest.raises(PostprocessingError, match="postprocessing.json"):
        load_postprocessing(tmp_path / "postprocessing.json")


def test_without_steps_the_folder_is_copied(tmp_path):
    seg = np.zeros((4, 4, 4), dtype=np.uint8)
    seg[0, 0, 0] = seg[3, 3, 3] = 1
    save_nifti(tmp_path / "in" / "a.nii.gz", seg, np.eye(4))
    (tmp_path / "in" / "a.npz").write_bytes(b"")  # probabilities: not carried over
    written = postprocess_folder(tmp_path / "in", tmp_path / "out", {"apply": []})
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.nii.gz"] == [p.name for p in written]
    np.testing.assert_array_equal(load_label(written[0])[0], seg)


@pytest.mark.parametrize("ending", [".nrrd", ".mhd"])
def test_a_folder_in_another_format_stays_in_it(tmp_path, ending):
    seg = np.zeros((4, 5, 6), dtype=np.uint8)
    seg[0, 0, 0] = seg[3, 3, 3] = seg[3, 4, 3] = 1
    affine = np.diag([-0.8, 1.1, 2.5, 1.0])
    save_image(tmp_path / "in" / f"a{ending}", seg, affine)
    largest = np.zeros_like(seg)
    largest[3, 3:5, 3] = 1
    step = {"operation": "keep_largest_component", "labels": [1]}
    for steps, expected in (([], seg), ([step], largest)):
        out = tmp_path / f"out_{len(steps)}"
        written = postprocess_folder(tmp_path / "in", out, {"apply": steps})
        assert [p.name for p in written] == [f"a{ending}"]
        labels, written_affine = load_label(written[0])
        np.testing.assert_array_equal(labels, expected)
        np.testing.assert_allclose(written_affine, affine, atol=1e-15)
        assert sorted(p.name for p in out.iterdir()) == sorted([f"a{ending}"] + (["a.zraw"] if ending == ".mhd" else []))
