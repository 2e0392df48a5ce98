"""`python -m unet predict` end to end, in a subprocess, with a tiny saved model."""

import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from unet.inference.predict import PredictSettings, predict_cases, preprocessed_inputs

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def test_predict_command_writes_segmentations_in_the_raw_grid(preprocessed_demo, trained_results, tmp_path):
    dataset, plan = preprocessed_demo.dataset, preprocessed_demo.plan
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    cases = [dataset.training[0], dataset.test[0]]
    for case in cases:
        shutil.copy(case.image, images)
    result = subprocess.run(
        [sys.executable, "-m", "unet", "predict", "-i", str(images), "-o", str(out), "-m", str(trained_results),
         "--overlap", "0.25", "--batch-size", "4", "--save-probabilities"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote 2 segmentation(s) to {out}" in result.stdout
    assert "predict: 100%" in result.stderr  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{case.id}{ext}" for case in cases for ext in (".nii.gz", ".npz"))
    for case in cases:
        raw, written = nib.load(str(case.image)), nib.load(str(out / f"{case.id}.nii.gz"))
        assert written.shape == raw.shape[:3]
        np.testing.assert_allclose(written.affine, raw.affine, atol=1e-5)
        labels = np.asarray(written.dataobj)
        assert set(np.unique(labels)) <= set(plan.label_values)
        with np.load(out / f"{case.id}.npz") as npz:
            np.testing.assert_array_equal(npz["label_values"][npz["probabilities"].argmax(0)], labels)

    # Preprocessed in memory exactly like training: the training case gives the same segmentation
    # as the workflow's path through the preprocess stage's files.
    train_id = dataset.training[0].id
    [expected] = predict_cases([trained_results / "fold_0" / "model.keras"],
                               preprocessed_inputs(preprocessed_demo.preprocessed, [train_id]), 1,
                               tmp_path / "expected", plan.patch_size, plan.label_values,
                               # as the CLI and the workflow do: background outside the mask
                               PredictSettings(overlap=0.25, batch_size=4,
                                               background_outside_mask=plan.nonzero_mask))
    np.testing.assert_array_equal(np.asarray(nib.load(str(out / f"{train_id}.nii.gz")).dataobj),
                                  np.asarray(nib.load(str(expected)).dataobj))


def _main(monkeypatch, capsys, error: Exception, *extra: str):
    """`main` with prediction replaced by one that raises `error`: (exit code, stderr)."""
    from unet import cli

    def fail(command):
        raise error

    monkeypatch.setattr(cli, "run_predict", fail)
    code = cli.main(["predict", "-i", "in", "-o", "out", "-m", "results", *extra])
    return code, capsys.readouterr().err


def test_the_users_mistakes_are_one_line_errors(monkeypatch, capsys):
    from unet.inference.predict import InputError
    from unet.io.images import ImageReadError

    for error in (InputError("in: no NIfTI images"), ImageReadError("in/a.nii.gz: cannot read NIfTI image")):
        code, err = _main(monkeypatch, capsys, error)
        assert code == 1 and err == f"python -m unet predict: error: {error}\n"


def test_internal_errors_keep_their_traceback(monkeypatch, capsys):
    """A ValueError from numpy or Keras is a bug to report, not the user's mistake to hide."""
    for error in (ValueError("operands could not be broadcast together"), FileNotFoundError(2, "gone", "x.npy")):
        with pytest.raises(type(error), match=str(error.args[-1])):
            _main(monkeypatch, capsys, error)


def test_regions_is_a_deprecated_no_op(tmp_path, capsys):
    # The regions come with the models (fold_k/model.json); --regions, which read them from the
    # run's dataset.ok, is accepted and ignored, with a warning.
    from unet import cli

    (tmp_path / "images").mkdir()
    code = cli.main(["predict", "-i", str(tmp_path / "images"), "-o", str(tmp_path / "out"),
                     "-m", str(tmp_path / "run"), "--regions"])
    err = capsys.readouterr().err
    assert "warning: --regions is deprecated and ignored" in err and "model.json" in err
    assert code == 1 and "dataset.ok" not in err and "Traceback" not in err
    assert f"{tmp_path / 'images'}: no images in the input folder" in err  # the call went on as without it
