"""`python -m unet predict`: finding models and images, and the errors for bad inputs.

Everything here fails before a model is loaded, so no test needs TensorFlow.
"""

import shutil

import nibabel as nib
import numpy as np
import pytest

from unet.cli import main
from unet.inference.standalone import InputError, image_cases, model_paths, predict_folder


@pytest.fixture
def model_folder(preprocessed_demo, tmp_path, describe):
    """fold_0, fold_2 and fold_10 have a model (placeholder files) and its model.json, fold_1 has
    none; plans.json is real."""
    from unet.io.atomic import write_json

    results = tmp_path / "results"
    write_json(results / "plans.json", preprocessed_demo.plans)
    for k in (0, 1, 2, 10):
        (results / f"fold_{k}").mkdir(parents=True)
    for k in (0, 2, 10):
        (results / f"fold_{k}" / "model.keras").write_bytes(b"")
        describe(results / f"fold_{k}", results / "plans.json")
    (results / "fold_x").mkdir()
    (results / "fold_x" / "model.keras").write_bytes(b"")
    return results


@pytest.fixture
def images(preprocessed_demo, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for case in preprocessed_demo.dataset.training[:2]:
        shutil.copy(case.image, folder)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_every_fold_with_a_model_by_default(model_folder):
    assert model_paths(model_folder) == [model_folder / f"fold_{k}" / "model.keras" for k in (0, 2, 10)]
    assert model_paths(model_folder, [2, 0]) == [model_folder / f"fold_{k}" / "model.keras" for k in (2, 0)]


def test_images_are_the_nifti_files(images, preprocessed_demo):
    cases = image_cases(images)
    assert [c.id for c in cases] == [c.id for c in preprocessed_demo.dataset.training[:2]]
    assert all(c.image.parent == images and c.label is None for c in cases)


def test_images_of_every_format_and_dicom_subfolders_are_cases(tmp_path):
    from unet.io.images import DICOM_SERIES, save_image

    folder = tmp_path / "in"
    labels = np.zeros((4, 5, 3), np.int16)
    for name in ("a.nrrd", "b.mha", "c.mhd", "d.nii", "e.nhdr"):
        save_image(folder / name, labels, np.eye(4))
    save_image(folder / "series_f", labels, np.eye(4), ending=DICOM_SERIES)
    save_image(folder / "noext_g", labels, np.eye(4), ending=DICOM_SERIES)
    for path in (folder / "noext_g").iterdir():  # DICOM files often have no ending at all
        path.rename(path.with_suffix(""))
    (folder / "notes").mkdir()  # a folder without DICOM files is left alone, as notes.txt is
    (folder / "notes" / "readme.txt").write_text("")
    (folder / "notes.txt").write_text("")
    cases = image_cases(folder)
    assert [(c.id, c.image.name) for c in cases] == [
        ("a", "a.nrrd"), ("b", "b.mha"), ("c", "c.mhd"), ("d", "d.nii"), ("e", "e.nhdr"),
        ("noext_g", "noext_g"), ("series_f", "series_f")]


def test_a_case_given_twice_is_an_error(tmp_path):
    from unet.io.images import save_image

    for name in ("a.nii.gz", "a.nrrd", "b.nii.gz"):
        save_image(tmp_path / name, np.zeros((2, 2, 2), np.uint8), np.eye(4))
    with pytest.raises(InputError, match=r"cases \['a'\] exist more than once \(a.nii.gz, a.nrrd\)"):
        image_cases(tmp_path)


def _error(in_dir, out_dir, results, folds=None) -> str:
    with pytest.raises(InputError) as error:
        predict_folder(in_dir, out_dir, results, folds)
    assert not out_dir.exists() or out_dir.resolve() == in_dir.resolve()  # nothing was written
    return str(error.value)


def test_missing_input_folder(model_folder, tmp_path):
    assert f"{tmp_path / 'nowhere'}: input folder does not exist" in _error(
        tmp_path / "nowhere", tmp_path / "out", model_folder)


def test_input_folder_without_images(model_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    assert f"{tmp_path / 'empty'}: no images in the input folder" in _error(tmp_path / "empty", tmp_path / "out", model_folder)


def test_output_folder_must_not_be_the_input_folder(images, model_folder):
    assert "output folder is the input folder" in _error(images, images.parent / ".." / images.parent.name
                                                         / images.name, model_folder)
    assert sorted(p.name for p in images.iterdir()) == sorted(
        [p.name for p in images.glob("*.nii.gz")] + ["notes.txt"])


def test_model_folder_without_models(images, model_folder, tmp_path):
    untrained = tmp_path / "untrained"
    (untrained / "fold_0").mkdir(parents=True)
    shutil.copy(model_folder / "plans.json", untrained)
    assert f"{untrained}: no trained models (fold_*/model.keras)" in _error(images, tmp_path / "out", untrained)
    assert f"{tmp_path / 'nothing'}: model folder does not exist" in _error(images, tmp_path / "out",
                                                                           tmp_path / "nothing")


def test_requested_fold_without_model(images, model_folder, tmp_path):
    text = _error(images, tmp_path / "out", model_folder, folds=[0, 1])
    assert f"{model_folder / 'fold_1' / 'model.keras'}: no such model" in text
    assert "fold_0" not in text


def test_model_folder_without_plans(images, model_folder, tmp_path):
    (model_folder / "plans.json").unlink()
    assert f"{model_folder / 'plans.json'}: missing" in _error(images, tmp_path / "out", model_folder)


def test_channel_count_must_match_the_plan(images, model_folder, preprocessed_demo):
    # A user passing one channel of a two-channel model (e.g. nnU-Net's one-file-per-channel layout).
    first = sorted(images.glob("*.nii.gz"))[0]
    img = nib.load(str(first))
    one_channel = images / "ONE_CHANNEL.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine), str(one_channel))
    with pytest.raises(InputError) as error:
        predict_folder(images, images.parent / "out", model_folder)
    text = str(error.value)
    assert str(one_channel) in text and str(model_folder / "plans.json") in text
    assert "1 channel(s)" in text and f"trained on {preprocessed_demo.plan.num_channels}" in text


def test_cli_reports_user_errors_without_a_traceback(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("os.environ", dict())  # the CLI sets TensorFlow's thread variables
    code = main(["predict", "-i", str(images), "-o", str(tmp_path / "out"), "-m", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("python -m unet predict: error: ") and str(tmp_path / "none") in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["--overlap", "1.0"], ["--batch-size", "0"], ["--folds", "-1"],
                                  ["--blend", "median"]])
def test_cli_rejects_bad_options(args, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "o"), "-m", str(tmp_path), *args])
    assert exit_.value.code == 2
    assert args[0] in capsys.readouterr().err
