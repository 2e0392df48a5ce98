"""Which models `-m` names (unet/inference/model_folder.py): a run's results folder in the
per-configuration layout ({results}/{task}/{configuration}/fold_{k}/, plans.json shared), one
configuration's folder, an older results folder and an archive; `--configuration`, the default
through best_configuration.json, and the errors that say what to choose.

The first tests predict with real networks (the 3d_fullres folds of `trained_run`, trained briefly,
and an untrained 2d network of the same plans.json), pair ensembles included; the rest fail before a
network is loaded, but for the cascade's, which predicts with untrained 3d_lowres and cascade
networks."""

import contextlib
import json
import shutil
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest

from unet.cli import main
from unet.inference.archive import export_archive
from unet.inference.errors import InputError
from unet.inference.model_folder import open_model_folder, pair_folder, pair_to_predict
from unet.inference.postprocess import apply_postprocessing
from unet.inference.predict import PredictSettings
from unet.inference.standalone import predict_folder
from unet.io.atomic import write_json

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

KEEP_LARGEST = {"apply": [{"operation": "keep_largest_component", "labels": [1, 2, 3]}]}
SETTINGS = PredictSettings(overlap=0.25, save_probabilities=True)


def _selection(winner: list[str]) -> dict:
    """best_configuration.json as unet.evaluation.selection writes it (the keys read here)."""
    return {"best": {"name": "+".join(winner), "configurations": winner, "ensemble": len(winner) > 1,
                     "foreground_dice": 0.5}, "candidates": []}


@pytest.fixture(scope="module")
def run(trained_run, preprocessed_demo, tmp_path_factory, describe):
    """A run's results folder in the per-configuration layout: plans.json, 3d_fullres/fold_0 and
    fold_1 (trained_run's networks) with a postprocessing.json, 2d/fold_0 (an untrained network of
    the plans' 2d configuration) without one, and best_configuration.json selecting 3d_fullres.
    Treat as read-only."""
    import keras

    from unet.model.network import build_from_plan
    from unet.preprocessing.plan import Plan

    root = tmp_path_factory.mktemp("per_configuration") / "demo"
    root.mkdir()
    shutil.copy(trained_run / "plans.json", root)
    for fold in ("fold_0", "fold_1"):
        shutil.copytree(trained_run / fold, root / "3d_fullres" / fold)
    write_json(root / "3d_fullres" / "postprocessing.json", KEEP_LARGEST)
    keras.utils.set_random_seed(7)
    (root / "2d" / "fold_0").mkdir(parents=True)
    build_from_plan(Plan.from_plans(preprocessed_demo.plans, "2d")).save(root / "2d" / "fold_0" / "model.keras")
    describe(root / "2d" / "fold_0", root / "plans.json", configuration="2d")
    write_json(root / "best_configuration.json", _selection(["3d_fullres"]))
    return root


@pytest.fixture(scope="module")
def images(preprocessed_demo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    shutil.copy(preprocessed_demo.dataset.test[0].image, folder)
    return folder


def _outputs(out):
    """{case file: (labels, probabilities)} of a prediction folder."""
    found = {}
    for path in sorted(out.glob("*.nii.gz")):
        with np.load(out / path.name.replace(".nii.gz", ".npz")) as npz:
            found[path.name] = (np.asarray(nib.load(str(path)).dataobj), npz["probabilities"])
    assert len(found) == 1
    return found


@pytest.fixture(scope="module")
def fullres_predictions(run, images, tmp_path_factory):
    """`python -m unet predict -m RUN` (no --configuration): its printout and predictions."""
    out = tmp_path_factory.mktemp("fullres") / "out"
    result = subprocess.run([sys.executable, "-m", "unet", "predict", "-i", str(images), "-o", str(out),
                             "-m", str(run), "--overlap", "0.25", "--save-probabilities"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, _outputs(out)


def test_the_selected_configuration_predicts_by_default_with_its_postprocessing(
        run, trained_run, images, fullres_predictions, tmp_path):
    printed, found = fullres_predictions
    assert f"configuration 3d_fullres (selected in best_configuration.json): {run / '3d_fullres'}" in printed
    assert "postprocessing (postprocessing.json): 1 step(s): keep_largest_component [1, 2, 3]" in printed
    # The same networks as the older layout's folder (plans.json beside fold_k/), which still
    # predicts: the same probabilities, and the label maps after the configuration's postprocessing.
    old = _outputs_of(predict_folder(images, tmp_path / "old", trained_run, settings=SETTINGS))
    for name, (labels, probabilities) in found.items():
        np.testing.assert_array_equal(probabilities, old[name][1])
        assert (labels != old[name][0]).sum() > 0  # the postprocessing removed islands
        np.testing.assert_array_equal(labels, apply_postprocessing(old[name][0], KEEP_LARGEST))


def _outputs_of(written):
    return _outputs(written[0].parent)


def test_an_exported_configuration_predicts_as_the_run(run, images, fullres_predictions, tmp_path):
    archive = export_archive(run, tmp_path / "model.zip", configuration="3d_fullres")
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert z.read("plans.json") == (run / "plans.json").read_bytes()
        assert json.loads(z.read("postprocessing.json")) == KEEP_LARGEST
        assert z.read("fold_1/model.keras") == (run / "3d_fullres" / "fold_1" / "model.keras").read_bytes()
    assert manifest["configuration"] == "3d_fullres" and manifest["folds"] == [0, 1]
    # By default the selected configuration's, byte for byte; and from the configuration's folder.
    assert export_archive(run, tmp_path / "default.zip").read_bytes() == archive.read_bytes()
    assert export_archive(run / "3d_fullres", tmp_path / "folder.zip").read_bytes() == archive.read_bytes()
    found = _outputs_of(predict_folder(images, tmp_path / "out", archive, settings=SETTINGS))
    for name, (labels, probabilities) in fullres_predictions[1].items():
        np.testing.assert_array_equal(found[name][0], labels)
        np.testing.assert_array_equal(found[name][1], probabilities)


def test_configuration_chooses_the_other_networks(run, images, fullres_predictions, tmp_path, capsys):
    written = predict_folder(images, tmp_path / "out", run, settings=SETTINGS, configuration="2d")
    printed = capsys.readouterr().out
    assert f"configuration 2d (as asked): {run / '2d'}" in printed
    assert f"postprocessing: none ({run / '2d'} has no postprocessing.json)" in printed  # not 3d_fullres's
    for name, (labels, probabilities) in _outputs_of(written).items():
        assert probabilities.shape == fullres_predictions[1][name][1].shape
        assert not np.allclose(probabilities, fullres_predictions[1][name][1], atol=1e-3)
    archive = export_archive(run, tmp_path / "2d.zip", configuration="2d")
    with zipfile.ZipFile(archive) as z:
        assert json.loads(z.read("manifest.json"))["configuration"] == "2d"
        assert sorted(z.namelist()) == ["fold_0/model.json", "fold_0/model.keras", "manifest.json", "plans.json"]
    with pytest.raises(InputError, match=r"2d.zip: the archive holds 2d models, not 3d_fullres; predict without "
                                         r"--configuration"):
        predict_folder(images, tmp_path / "x", archive, configuration="3d_fullres")


def test_a_pair_ensemble_averages_its_configurations_and_applies_its_postprocessing(
        run, images, fullres_predictions, tmp_path, capsys):
    root = tmp_path / "demo"
    shutil.copytree(run, root)
    write_json(root / "ensembles" / "2d+3d_fullres" / "postprocessing.json", KEEP_LARGEST)
    two_d = _outputs_of(predict_folder(images, tmp_path / "2d", root, settings=SETTINGS, configuration="2d"))
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["predict", "-i", str(images), "-o", str(out), "-m", str(root), "--configuration", "2d+3d_fullres",
                 "--overlap", "0.25", "--save-probabilities"]) == 0
    printed = capsys.readouterr().out
    assert f"pair ensemble 2d+3d_fullres (as asked): {root / '2d'}, {root / '3d_fullres'}" in printed
    assert "postprocessing (postprocessing.json): 1 step(s): keep_largest_component [1, 2, 3]" in printed
    values = np.asarray([0, 1, 2, 3])
    found = _outputs(out)
    for name, (labels, probabilities) in found.items():
        mean = (two_d[name][1] + fullres_predictions[1][name][1]) / 2
        np.testing.assert_allclose(probabilities, mean, atol=1e-6)
        averaged = values[np.argmax(mean, axis=0)]
        assert (averaged != values[np.argmax(fullres_predictions[1][name][1], axis=0)]).any()  # not one member's
        assert (apply_postprocessing(averaged, KEEP_LARGEST) != averaged).any()   # the pair's postprocessing ran
        np.testing.assert_array_equal(labels, apply_postprocessing(averaged, KEEP_LARGEST))
    assert sorted(p.name for p in out.iterdir()) == sorted([*found, *(n.replace(".nii.gz", ".npz") for n in found)])
    # The same pair when best_configuration.json selects it, without --configuration.
    write_json(root / "best_configuration.json", _selection(["2d", "3d_fullres"]))
    again = _outputs_of(predict_folder(images, tmp_path / "selected", root, settings=SETTINGS))
    assert "pair ensemble 2d+3d_fullres (selected in best_configuration.json)" in capsys.readouterr().out
    for name, (labels, probabilities) in again.items():
        np.testing.assert_array_equal(labels, found[name][0])
        np.testing.assert_array_equal(probabilities, found[name][1])


# -- choosing, and the errors: nothing is loaded -----------------------------------------------

@pytest.fixture
def layout(preprocessed_demo, tmp_path, describe):
    """`layout({configuration: folds}, plans=None)`: a results folder of placeholder networks,
    each fold's model.json naming its configuration (plans: preprocessed_demo's)."""
    root = tmp_path / "results" / "demo"

    def make(configurations, plans=None):
        write_json(root / "plans.json", plans or preprocessed_demo.plans)
        for configuration, folds in configurations.items():
            for k in folds:
                fold = root / configuration / f"fold_{k}"
                fold.mkdir(parents=True, exist_ok=True)
                (fold / "model.keras").write_bytes(b"")
                describe(fold, root / "plans.json", configuration=configuration)
        return root

    return make


def _opened(path, **kwargs):
    with contextlib.ExitStack() as stack:
        source = open_model_folder(path, stack, **kwargs)
        return source, source.model_set()


def _refused(path, **kwargs) -> str:
    with pytest.raises(InputError) as error:
        _opened(path, **kwargs)
    return str(error.value)


def test_the_only_configuration_trained_needs_no_selection(layout):
    root = layout({"3d_fullres": (0, 1)})
    (root / "2d" / "fold_0").mkdir(parents=True)  # started, no network yet: not trained
    source, models = _opened(root)
    assert (source.folder, source.plans, source.configuration) == (root / "3d_fullres", root / "plans.json",
                                                                   "3d_fullres")
    assert source.chosen == "the only configuration trained" and source.trained == ("3d_fullres",)
    assert models.models == (root / "3d_fullres" / "fold_0" / "model.keras",
                             root / "3d_fullres" / "fold_1" / "model.keras")


def test_best_configuration_json_chooses_between_several(layout):
    root = layout({"2d": (0,), "3d_fullres": (0, 1)})
    assert _refused(root) == (
        f"{root}: models of several configurations (2d, 3d_fullres) and no best_configuration.json to choose "
        f"between them (the workflow's selection writes it); choose --configuration 2d or 3d_fullres")
    write_json(root / "best_configuration.json", _selection(["2d"]))
    source, models = _opened(root)
    assert source.folder == root / "2d" and models.plan.configuration == "2d" and models.plan.slice_axis == 2
    assert _opened(root, configuration="3d_fullres")[1].plan.configuration == "3d_fullres"  # the flag wins
    assert pair_to_predict(root) is None
    write_json(root / "best_configuration.json", _selection(["2d", "3d_fullres"]))
    # A selected pair predicts as a pair (predict_folder), and exports one configuration at a time.
    assert pair_to_predict(root) == (root, ("2d", "3d_fullres"), "selected in best_configuration.json")
    assert pair_to_predict(root, configuration="2d") is None
    assert _refused(root) == (
        f"{root / 'best_configuration.json'}: the selected model is the ensemble 2d+3d_fullres; an archive "
        f"holds one configuration; choose --configuration 2d or 3d_fullres")
    write_json(root / "best_configuration.json", _selection(["3d_lowres"]))
    assert _refused(root) == (
        f"{root / 'best_configuration.json'}: selects 3d_lowres, but {root / '3d_lowres'} has no trained models "
        f"(fold_*/model.keras; trained there: 2d, 3d_fullres); choose --configuration 2d or 3d_fullres")
    (root / "best_configuration.json").write_text('{"best": "2d"}')
    assert "best_configuration.json: not the selection's best_configuration.json" in _refused(root)


def test_a_configuration_not_trained_is_named(layout):
    root = layout({"2d": (0,), "3d_fullres": (0,)})
    assert _refused(root, configuration="3d_lowres") == (
        f"{root}: no trained 3d_lowres models ({root / '3d_lowres'}/fold_*/model.keras; trained there: 2d, "
        f"3d_fullres); choose --configuration 2d or 3d_fullres")
    # The best checkpoint counts only where its file is.
    assert "no trained 2d models" in _refused(root, configuration="2d", checkpoint="best")
    assert "configuration '2D': expected one of 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres" in _refused(
        root, configuration="2D")


def test_a_configurations_folder_is_that_configuration(layout):
    root = layout({"2d": (0,), "3d_fullres": (0, 1)})
    source, models = _opened(root / "2d")
    assert (source.folder, source.plans, models.plan.configuration) == (root / "2d", root / "plans.json", "2d")
    assert _refused(root / "2d", configuration="3d_fullres") == (
        f"{root / '2d'}: the folder of the 2d models, not 3d_fullres; give the run's folder {root} with "
        f"--configuration 3d_fullres, or drop --configuration")
    shutil.copytree(root / "2d" / "fold_0", root / "3d_fullres" / "fold_2")  # a 2d fold in the wrong place
    assert _refused(root / "3d_fullres") == (
        f"{root / '3d_fullres' / 'fold_2' / 'model.json'}: the fold was trained on configuration 2d, but lies in "
        f"{root / '3d_fullres'}, the 3d_fullres models' folder; move it to {root / '2d'}")


def test_an_ensembles_folder_is_that_pair(layout):
    root = layout({"2d": (0,), "3d_fullres": (0,)})
    pair = root / "ensembles" / "2d+3d_fullres"
    pair.mkdir(parents=True)
    assert pair_to_predict(pair) == (root, ("2d", "3d_fullres"), "the pair's folder")
    assert pair_to_predict(root, configuration="3d_fullres+2d") == (root, ("3d_fullres", "2d"), "as asked")
    assert pair_folder(root, ("3d_fullres", "2d")) == pair   # the workflow's folder, in either order
    with pytest.raises(InputError, match=r"2d\+3d_fullres: the folder of the pair 2d\+3d_fullres, not 2d; give"):
        pair_to_predict(pair, configuration="2d")
    with pytest.raises(InputError, match=r"'2d\+2d' is not a pair ensemble: expected two different configurations"):
        pair_to_predict(root, configuration="2d+2d")
    older = root.parent / "older"   # one configuration's folder: no pair
    shutil.copytree(root / "2d", older)
    with pytest.raises(InputError, match=r"older: a pair ensemble \(2d\+3d_fullres\) predicts from a run's results"):
        pair_to_predict(older, configuration="2d+3d_fullres")
    assert _refused(pair) == (   # export: one configuration
        f"{pair}: a pair ensemble's folder holds no models; an archive holds one configuration; give the run's "
        f"folder {root} and choose --configuration 2d or 3d_fullres")


def test_an_older_results_folder_is_checked_against_the_configuration_asked_for(layout):
    root = layout({"3d_fullres": (0,)})
    older = root.parent / "older"
    shutil.copytree(root / "3d_fullres", older)
    shutil.copy(root / "plans.json", older)
    assert _opened(older)[1].plan.configuration == "3d_fullres"
    assert _opened(older, configuration="3d_fullres")[0].folder == older
    assert _refused(older, configuration="2d") == (
        f"{older}: the models were trained on configuration 3d_fullres ({older / 'fold_0' / 'model.json'}), "
        f"not 2d; choose --configuration 3d_fullres, or another model folder")


def _cascade_plans(plans):
    """`plans` with a 3d_lowres (coarser spacing) and a 3d_cascade_fullres on top of it."""
    from unet.preprocessing.plan import Plan

    fullres = Plan.from_plans(plans).to_json()
    lowres = {**fullres, "configuration": "3d_lowres", "spacing": [1.5 * s for s in fullres["spacing"]]}
    cascade = {**fullres, "configuration": "3d_cascade_fullres", "previous_stage": "3d_lowres"}
    return {**plans, "configurations": {**plans["configurations"], "3d_lowres": lowres,
                                        "3d_cascade_fullres": cascade}}


def test_a_cascade_without_its_previous_stage_is_refused_naming_what_predicts_alone(
        layout, preprocessed_demo, images, tmp_path):
    root = layout({"3d_fullres": (0,), "3d_cascade_fullres": (0,)}, plans=_cascade_plans(preprocessed_demo.plans))
    with pytest.raises(InputError) as error:
        predict_folder(images, tmp_path / "out", root, configuration="3d_cascade_fullres")
    assert str(error.value) == (
        f"{root}: the 3d_cascade_fullres models need the 3d_lowres segmentation of each image as extra input, "
        f"but {root / '3d_lowres'} has no trained models to predict it; choose --configuration 3d_fullres")
    assert not (tmp_path / "out").exists()


def test_a_cascade_predicts_its_previous_stage_first_as_the_workflow_does(preprocessed_demo, images, tmp_path, capsys,
                                                                          describe):
    """Untrained networks (arbitrary but deterministic): the command line's cascade equals the
    workflow's rule `ensemble` given the 3d_lowres test-set predictions, file for file."""
    import keras

    from unet.inference.predict import predict_test_set
    from unet.model.network import build_from_plan
    from unet.preprocessing.plan import Plan

    root = tmp_path / "results" / "demo"
    root.mkdir(parents=True)
    plans = _cascade_plans(preprocessed_demo.plans)
    write_json(root / "plans.json", plans)
    keras.utils.set_random_seed(11)
    for configuration in ("3d_lowres", "3d_cascade_fullres"):
        fold = root / configuration / "fold_0"
        fold.mkdir(parents=True)
        build_from_plan(Plan.from_plans(plans, configuration)).save(fold / "model.keras")
        describe(fold, root / "plans.json", configuration=configuration)
    assert Plan.from_plans(plans, "3d_cascade_fullres").input_channels > Plan.from_plans(plans).input_channels
    out = tmp_path / "out"
    assert main(["predict", "-i", str(images), "-o", str(out), "-m", str(root), "--configuration",
                 "3d_cascade_fullres", "--overlap", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert ("3d_cascade_fullres takes the 3d_lowres segmentation of each image: predicting it first\n"
            "configuration 3d_lowres (as asked)") in printed
    data = preprocessed_demo.root / "raw"
    section = {"overlap": 0.25}
    lowres = predict_test_set([root / "3d_lowres" / "fold_0" / "model.keras"], data, tmp_path / "lowres",
                              plans=root / "plans.json", section=section)
    expected = predict_test_set([root / "3d_cascade_fullres" / "fold_0" / "model.keras"], data, tmp_path / "cascade",
                                plans=root / "plans.json", section=section, previous_predictions=tmp_path / "lowres")
    assert [p.name for p in sorted(out.iterdir())] == [p.name for p in expected] == [p.name for p in lowres]
    for path in expected:
        ours = np.asarray(nib.load(str(out / path.name)).dataobj)
        np.testing.assert_array_equal(ours, np.asarray(nib.load(str(path)).dataobj))
        assert len(np.unique(ours)) > 1
    archive = export_archive(root, tmp_path / "cascade.zip", configuration="3d_cascade_fullres")
    with pytest.raises(InputError, match=r"cascade.zip: the 3d_cascade_fullres models need the 3d_lowres "
                                         r"segmentation of each image as extra input, and an archive holds one "
                                         r"configuration: predict from the run's results folder"):
        predict_folder(images, tmp_path / "x", archive)


def test_the_cli_passes_configuration_and_reports_errors_in_one_line(layout, images, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr("os.environ", dict())  # the CLI sets TensorFlow's thread variables
    root = layout({"2d": (0,), "3d_fullres": (0,)})
    for command in (["predict", "-i", str(images), "-o", str(tmp_path / "out")],
                    ["export", "-o", str(tmp_path / "model.zip")]):
        assert main([*command, "-m", str(root), "--configuration", "3d_lowres"]) == 1
        err = capsys.readouterr().err
        assert err == (f"python -m unet {command[0]}: error: {root}: no trained 3d_lowres models "
                       f"({root / '3d_lowres'}/fold_*/model.keras; trained there: 2d, 3d_fullres); choose "
                       f"--configuration 2d or 3d_fullres\n")
    # A pair: its members must be trained; export takes one configuration.
    assert main(["predict", "-i", str(images), "-o", str(tmp_path / "out"), "-m", str(root), "--configuration",
                 "3d_fullres+3d_lowres"]) == 1
    assert capsys.readouterr().err == (
        f"python -m unet predict: error: {root}: no trained 3d_lowres models for the pair 3d_fullres+3d_lowres "
        f"({root / '3d_lowres'}/fold_*/model.keras; trained there: 2d, 3d_fullres)\n")
    for command, pair in (("predict", "2d+2d"), ("export", "2d+3d_fullres")):
        with pytest.raises(SystemExit) as exit_:
            main([command, "-i", str(images), "-o", str(tmp_path / "out"), "-m", str(root), "--configuration", pair]
                 if command == "predict" else [command, "-o", str(tmp_path / "m.zip"), "-m", str(root),
                                               "--configuration", pair])
        assert exit_.value.code == 2 and "--configuration" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_2d_configuration_exports_its_runtime_checked_on_a_real_slice(run, tmp_path, capsys):
    """The export's check of a 2d network's SavedModel cuts its real patch from the middle slice of
    a preprocessed 3D image (beside plans.json, as in a run)."""
    from unet.io.atomic import save_npy

    shutil.copytree(run, tmp_path / "demo")
    image = np.random.default_rng(0).standard_normal((46, 47, 43, 2)).astype(np.float32)
    save_npy(tmp_path / "demo" / "preprocessed" / "DEMO_000.npy", image)
    out = export_archive(tmp_path / "demo", tmp_path / "2d.zip", configuration="2d", formats=("keras", "saved_model"))
    with zipfile.ZipFile(out) as archive:
        assert "fold_0/formats/saved_model/saved_model.pb" in archive.namelist()
    checked = capsys.readouterr().out
    assert "saved_model" in checked and "random " in checked and "real " in checked, checked
