"""The model archive (unet/inference/archive.py): `python -m unet export`, predicting from the
archive alone, and the archives that must be refused. The models are trained for real, briefly
(tests/inference/conftest.py: `trained_run`, `region_run`)."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest

import unet
from unet.inference.archive import export_archive
from unet.inference.errors import InputError
from unet.inference.postprocess import apply_postprocessing
from unet.inference.regions import labels_from_regions
from unet.inference.runtimes import onnx_available
from unet.inference.standalone import predict_folder

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _run(*args, cwd=None, env=None, blocked=()):
    """`python -m unet ARGS` in a fresh process; the modules `blocked` cannot be imported in it."""
    if blocked:
        command = [sys.executable, "-c", f"import sys; sys.modules.update(dict.fromkeys({list(blocked)!r})); "
                                         f"from unet.cli import main; sys.exit(main(sys.argv[1:]))"]
    else:
        command = [sys.executable, "-m", "unet"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=env)


def _cli(*args, cwd=None, env=None, blocked=()):
    result = _run(*args, cwd=cwd, env=env, blocked=blocked)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def images(preprocessed_demo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    shutil.copy(preprocessed_demo.dataset.test[0].image, folder)
    return folder


@pytest.fixture(scope="module")
def archive(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model.zip"
    assert f"wrote {out}" in _cli("export", "-m", trained_run, "-o", out).stdout
    return out


def _predict(model, images, out, *args, cwd=None, blocked=(), printed=None):
    """`python -m unet predict` in a fresh process with its own, checked-empty TMPDIR: {case: (labels,
    npz arrays)}; what it printed is appended to `printed`."""
    tmp = out.parent / f"{out.name}.tmp"
    tmp.mkdir()
    result = _cli("predict", "-i", images, "-o", out, "-m", model, "--overlap", "0.25", "--save-probabilities",
                  *args, cwd=cwd, env={**os.environ, "TMPDIR": str(tmp)}, blocked=blocked)
    if printed is not None:
        printed.append(result.stdout)
    # The unpacked archive was removed (onnxruntime keeps a session-id file of its own, .ses, there).
    assert not [p for p in tmp.iterdir() if p.name != ".ses"]
    found = {}
    for path in sorted(out.glob("*.nii.gz")):
        with np.load(out / path.name.replace(".nii.gz", ".npz")) as npz:
            found[path.name] = (np.asarray(nib.load(str(path)).dataobj), {k: npz[k] for k in npz.files})
    assert len(found) == 1
    return found


@pytest.fixture(scope="module")
def run_predictions(trained_run, images, tmp_path_factory):
    """The results folder's predictions, final and best checkpoints."""
    tmp = tmp_path_factory.mktemp("run_predictions")
    return {"final": _predict(trained_run, images, tmp / "final"),
            "best": _predict(trained_run, images, tmp / "best", "--checkpoint", "best")}


def test_the_archive_holds_every_fold_and_what_predicting_needs(archive, trained_run, preprocessed_demo, tmp_path):
    plan = preprocessed_demo.plan
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        assert z.read("plans.json") == (trained_run / "plans.json").read_bytes()
        for name, member in manifest["members"].items():
            data = z.read(name)
            assert member == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, name
    assert names == {"manifest.json", "plans.json",
                     *(f"fold_{k}/{f}" for k in (0, 1) for f in ("model.json", "model.keras"))}
    assert set(manifest["members"]) == names - {"manifest.json"}
    assert {k: manifest[k] for k in ("format", "version", "package_version", "checkpoint", "folds", "formats",
                                     "configuration", "channels", "regions")} == {
        "format": "unet-model-archive", "version": 1, "package_version": unet.__version__, "checkpoint": "final",
        "folds": [0, 1], "formats": ["keras"], "configuration": "3d_fullres", "channels": list(plan.modalities),
        "regions": None}
    assert manifest["labels"] == {str(v): name for v, name in sorted(plan.labels.items())}
    # The same models give the same archive, byte for byte.
    assert export_archive(trained_run, tmp_path / "again.zip").read_bytes() == archive.read_bytes()


def test_the_archive_alone_predicts_as_the_run(archive, images, run_predictions, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(archive, fresh / "model.zip")
    from_zip = _predict("model.zip", images, tmp_path / "zip", cwd=fresh)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unpacked")
    from_folder = _predict(tmp_path / "unpacked", images, tmp_path / "unpacked_out")
    expected = run_predictions["final"]
    for found in (from_zip, from_folder):
        assert found.keys() == expected.keys()
        for name, (labels, arrays) in found.items():
            np.testing.assert_array_equal(labels, expected[name][0])
            np.testing.assert_array_equal(arrays["probabilities"], expected[name][1]["probabilities"])


def test_the_best_checkpoint_predicts_and_travels(trained_run, images, run_predictions, tmp_path):
    # Each fold's best epoch (0 of 2 here) is another network than the final one.
    for name, (labels, arrays) in run_predictions["best"].items():
        assert not np.array_equal(arrays["probabilities"], run_predictions["final"][name][1]["probabilities"])
    best_zip = tmp_path / "best.zip"
    _cli("export", "-m", trained_run, "-o", best_zip, "--checkpoint", "best")
    with zipfile.ZipFile(best_zip) as z:
        assert json.loads(z.read("manifest.json"))["checkpoint"] == "best"
        assert {n for n in z.namelist() if n.endswith(".keras")} == {"fold_0/model_best.keras",
                                                                   "fold_1/model_best.keras"}
    found = _predict(best_zip, images, tmp_path / "out")  # the archive's own checkpoint by default
    for name, (labels, arrays) in found.items():
        np.testing.assert_array_equal(labels, run_predictions["best"][name][0])
        np.testing.assert_array_equal(arrays["probabilities"], run_predictions["best"][name][1]["probabilities"])
    with pytest.raises(InputError, match=r"best.zip: the archive holds the best checkpoint, not final"):
        predict_folder(images, tmp_path / "x", best_zip, checkpoint="final")


def test_a_region_model_predicts_with_its_own_regions_from_its_archive(region_run, images, tmp_path):
    # Trained with explicit regions, not dataset.json's three: no dataset.ok, no config, no flag.
    regions = {"core": [2, 3], "enhancing": [3]}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    export_archive(region_run, fresh / "regions.zip")
    with zipfile.ZipFile(fresh / "regions.zip") as z:
        assert json.loads(z.read("manifest.json"))["regions"] == regions
    found = _predict("regions.zip", images, tmp_path / "out", cwd=fresh)
    for name, (labels, arrays) in found.items():
        assert arrays["region_names"].tolist() == list(regions)
        assert arrays["probabilities"].shape[0] == 2
        # The label map is these two regions painted (channel order as trained).
        np.testing.assert_array_equal(labels, labels_from_regions(np.moveaxis(arrays["probabilities"], 0, -1),
                                                                  regions))
        assert set(np.unique(labels)) <= {0, 2, 3}


# -- Archives and folders that are refused, before any model is loaded --------------------------

def _rewrite(src, dst, replace=None, drop=(), add=None):
    """A copy of the zip `src` with members replaced ({name: bytes}), dropped or added."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename not in drop:
                zout.writestr(info, replace.get(info.filename, zin.read(info.filename)))
        for info, data in add.items():
            zout.writestr(info, data)
    return dst


def _refused(images, model, tmp_path) -> str:
    with pytest.raises(InputError) as error:
        predict_folder(images, tmp_path / "out", model)
    assert not (tmp_path / "out").exists()
    return str(error.value)


def test_an_altered_member_is_named(archive, images, tmp_path):
    with zipfile.ZipFile(archive) as z:
        model = bytearray(z.read("fold_0/model.keras"))
    model[len(model) // 2] ^= 0xFF
    altered = _rewrite(archive, tmp_path / "altered.zip", replace={"fold_0/model.keras": bytes(model)})
    assert "member fold_0/model.keras: checksum mismatch" in _refused(images, altered, tmp_path)


def test_a_byte_flipped_in_the_zip_is_named(archive, images, tmp_path):
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("fold_1/model.keras")
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    (tmp_path / "flipped.zip").write_bytes(bytes(data))
    text = _refused(images, tmp_path / "flipped.zip", tmp_path)
    assert "member fold_1/model.keras" in text and ("corrupted" in text or "checksum mismatch" in text)


def test_a_missing_or_unlisted_member_is_named(archive, images, tmp_path):
    missing = _rewrite(archive, tmp_path / "missing.zip", drop={"plans.json"})
    assert "member plans.json missing" in _refused(images, missing, tmp_path)
    extra = _rewrite(archive, tmp_path / "extra.zip", add={"fold_2/model.keras": b"x"})
    assert "member fold_2/model.keras is not in the manifest" in _refused(images, extra, tmp_path)
    no_manifest = _rewrite(archive, tmp_path / "plain.zip", drop={"manifest.json"})
    assert "member manifest.json missing" in _refused(images, no_manifest, tmp_path)
    (tmp_path / "notes.zip").write_text("not a zip")
    assert "not a model archive" in _refused(images, tmp_path / "notes.zip", tmp_path)


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "fold_0/../../evil.txt", "link"])
def test_members_that_would_leave_the_folder_are_refused(archive, images, tmp_path, name):
    info = zipfile.ZipInfo(name)
    if name == "link":
        info.external_attr = 0o120777 << 16  # a symbolic link to ../evil.txt
    evil = _rewrite(archive, tmp_path / "evil.zip", add={info: b"../evil.txt"})
    text = _refused(images, evil, tmp_path)
    assert repr(name) in text or f"member {name} is a symbolic link" in text
    assert not (tmp_path / "evil.txt").exists() and not os.path.lexists("/tmp/evil.txt")


def test_an_unpacked_archive_is_verified_in_place(archive, images, tmp_path):
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unpacked")
    with open(tmp_path / "unpacked" / "fold_1" / "model.json", "a") as f:
        f.write(" ")
    assert "member fold_1/model.json: checksum mismatch" in _refused(images, tmp_path / "unpacked", tmp_path)
    (tmp_path / "unpacked" / "fold_1" / "model.json").unlink()
    assert "member fold_1/model.json missing" in _refused(images, tmp_path / "unpacked", tmp_path)


def test_a_manifest_that_disagrees_with_the_models_is_refused(archive, images, tmp_path):
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read("manifest.json"))
    manifest["regions"] = {"core": [2, 3], "enhancing": [3]}
    lying = _rewrite(archive, tmp_path / "lying.zip", replace={"manifest.json": json.dumps(manifest)})
    assert "manifest.json says regions" in _refused(images, lying, tmp_path)


def test_folds_must_share_their_plan_and_regions(trained_run, region_run, images, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(trained_run / "fold_0", mixed / "fold_0")
    shutil.copytree(region_run / "fold_0", mixed / "fold_1")
    shutil.copy(trained_run / "plans.json", mixed)
    assert "folds trained with different regions" in _refused(images, mixed, tmp_path)
    plans = json.loads((trained_run / "plans.json").read_text())
    (mixed / "plans.json").write_text(json.dumps({**plans, "batch_size": 1}))
    assert f"{mixed / 'fold_0' / 'model.json'}: the fold was trained with another plans.json" in _refused(
        images, mixed, tmp_path)
    (mixed / "fold_0" / "model.json").unlink()
    assert f"{mixed / 'fold_0' / 'model.json'}: missing; the train stage writes it" in _refused(
        images, mixed, tmp_path)


def test_an_archive_re_exports_a_subset_of_its_folds(archive, tmp_path):
    one = export_archive(archive, tmp_path / "fold_1.zip", folds=[1])
    with zipfile.ZipFile(one) as z, zipfile.ZipFile(archive) as original:
        manifest = json.loads(z.read("manifest.json"))
        assert z.read("fold_1/model.keras") == original.read("fold_1/model.keras")
    assert manifest["folds"] == [1] and set(manifest["members"]) == {
        "plans.json", "fold_1/model.json", "fold_1/model.keras"}
    with pytest.raises(InputError, match=r"model.zip: no fold 2 in the archive \(folds 0, 1\)"):
        export_archive(archive, tmp_path / "none.zip", folds=[2])
    assert not (tmp_path / "none.zip").exists()


def test_other_formats_go_under_each_fold_and_are_checksummed(archive, images, tmp_path):
    # The hook for more formats: an exporter writes into each fold's formats/ folder.
    def exporter(model, formats):
        (formats / "dummy" / "variables").mkdir(parents=True)
        (formats / "dummy" / "variables" / "weights.bin").write_bytes(model.read_bytes()[:64])
        (formats / "dummy" / "graph.pb").write_bytes(b"graph of " + model.parent.name.encode())

    multi = export_archive(archive, tmp_path / "multi.zip", formats=["keras", "dummy"], exporters={"dummy": exporter})
    with zipfile.ZipFile(multi) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert z.read("fold_1/formats/dummy/graph.pb") == b"graph of fold_1"
    assert manifest["formats"] == ["keras", "dummy"]
    assert {f"fold_{k}/formats/dummy/{f}" for k in (0, 1) for f in ("graph.pb", "variables/weights.bin")} \
        <= set(manifest["members"])
    altered = _rewrite(multi, tmp_path / "altered.zip", replace={"fold_0/formats/dummy/variables/weights.bin": b"x" * 64})
    assert "member fold_0/formats/dummy/variables/weights.bin: checksum mismatch" in _refused(
        images, altered, tmp_path)
    with pytest.raises(InputError, match="format tflite: no exporter"):
        export_archive(archive, tmp_path / "tflite.zip", formats=["tflite"])


def test_a_saved_model_in_the_archive_predicts_as_its_keras_network(trained_run, preprocessed_demo, tmp_path):
    """`export --formats saved_model`: each fold's SavedModel, checked against Keras at export, is
    where unet.inference.runtimes finds it in the unpacked archive, and gives Keras' probabilities."""
    from unet.inference.model_folder import open_model_folder
    from unet.inference.runtimes import load_runtime, runtime_path

    out = tmp_path / "model.zip"
    printed = _cli("export", "-m", trained_run, "-o", out, "--formats", "saved_model", "--folds", "0").stdout
    assert "saved_model -> " in printed and "max abs difference of probabilities vs Keras: random" in printed
    assert "real" in printed  # the results folder's preprocessed images give the real patch
    with contextlib.ExitStack() as stack:
        folder = open_model_folder(out, stack).folder
        with zipfile.ZipFile(out) as z:
            assert json.loads(z.read("manifest.json"))["formats"] == ["keras", "saved_model"]
        plan = preprocessed_demo.plan
        batch = np.random.default_rng(0).normal(size=(1, *plan.patch_size, plan.num_channels)).astype(np.float32)
        saved = load_runtime(runtime_path(folder / "fold_0" / "formats", "saved_model"), "saved_model")
        keras_model = load_runtime(folder / "fold_0" / "model.keras", "keras")
        np.testing.assert_allclose(saved(batch), keras_model(batch), atol=1e-5)


def test_the_runs_postprocessing_travels_with_its_models(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run / "fold_0", run / "fold_0")
    shutil.copy(trained_run / "plans.json", run)
    spec = {"apply": [{"operation": "keep_largest_component", "labels": [1, 2, 3]}]}
    (run / "postprocessing.json").write_text(json.dumps(spec))
    with zipfile.ZipFile(export_archive(run, tmp_path / "model.zip")) as z:
        assert json.loads(z.read("postprocessing.json")) == spec
        assert "postprocessing.json" in json.loads(z.read("manifest.json"))["members"]


# -- Predicting with another runtime (--runtime), and with the models' postprocessing ---------------

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed (make onnx-env)")


@pytest.fixture(scope="module")
def runtimes_archive(trained_run, tmp_path_factory):
    """The run's archive with each fold also as SavedModel and ONNX (`export --formats`)."""
    if not onnx_available():
        pytest.skip("the onnx extra is not installed (make onnx-env)")
    out = tmp_path_factory.mktemp("runtimes") / "model.zip"
    _cli("export", "-m", trained_run, "-o", out, "--formats", "saved_model", "onnx")
    return out


@needs_onnx
def test_each_runtime_of_the_archive_predicts_as_keras(runtimes_archive, images, run_predictions, tmp_path):
    saved = _predict(runtimes_archive, images, tmp_path / "saved_model", "--runtime", "saved_model")
    # ONNX predicts with neither TensorFlow nor Keras importable.
    onnx = _predict(runtimes_archive, images, tmp_path / "onnx", "--runtime", "onnx",
                    blocked=("tensorflow", "keras"))
    expected = run_predictions["final"]  # Keras, from the results folder (= from the archive, above)
    for name, (labels, arrays) in expected.items():
        probabilities = arrays["probabilities"]
        np.testing.assert_array_equal(saved[name][0], labels)
        np.testing.assert_allclose(saved[name][1]["probabilities"], probabilities, atol=1e-4)
        np.testing.assert_allclose(onnx[name][1]["probabilities"], probabilities, atol=1e-4)
        # The same label map wherever Keras' two likeliest classes are further apart than the tolerance.
        top = np.sort(probabilities, axis=0)
        decided = top[-1] - top[-2] > 2e-4
        assert decided.mean() > 0.99
        np.testing.assert_array_equal(onnx[name][0][decided], labels[decided])


def test_a_runtime_the_models_lack_is_named_with_the_export_that_writes_it(archive, trained_run, images,
                                                                           tmp_path):
    for model, held in ((archive, "the archive's formats are keras"),
                        (trained_run, "a results folder holds the Keras networks only")):
        with pytest.raises(InputError) as error:
            predict_folder(images, tmp_path / "out", model, runtime="onnx")
        assert str(error.value) == (
            f"{model}: no onnx network (fold_0/formats/model.onnx; {held}). Export the models with it, then "
            f"predict from the archive: `python -m unet export -m {model} -o model.zip --formats onnx` (or "
            f"predict with --runtime keras)")
        assert not (tmp_path / "out").exists()


@needs_onnx
def test_a_missing_onnxruntime_says_how_to_install_it(runtimes_archive, images, tmp_path):
    result = _run("predict", "-i", images, "-o", tmp_path / "out", "-m", runtimes_archive, "--runtime", "onnx",
                  blocked=("onnxruntime",))
    assert result.returncode == 1
    assert result.stderr.startswith("python -m unet predict: error: the ONNX runtime needs the Python package "
                                    "`onnxruntime`, which is not installed here")
    assert "make onnx-env" in result.stderr and "Traceback" not in result.stderr


def test_predict_applies_the_models_postprocessing_to_the_label_maps_only(trained_run, images, run_predictions,
                                                                          tmp_path):
    run = tmp_path / "run"
    for fold in ("fold_0", "fold_1"):
        (run / fold).mkdir(parents=True)
        for name in ("model.keras", "model.json"):
            shutil.copy(trained_run / fold / name, run / fold)
    shutil.copy(trained_run / "plans.json", run)
    spec = {"apply": [{"operation": "keep_largest_component", "labels": [1, 2, 3]}]}
    (run / "postprocessing.json").write_text(json.dumps(spec))
    [(name, (raw, raw_arrays))] = run_predictions["final"].items()  # the run had no postprocessing.json
    expected = apply_postprocessing(raw, spec)
    assert (expected != raw).sum() > 0  # the networks' label map has islands for the step to remove

    printed = []
    archived = _predict(export_archive(run, tmp_path / "model.zip"), images, tmp_path / "post", printed=printed)
    assert "postprocessing (postprocessing.json): 1 step(s): keep_largest_component [1, 2, 3]" in printed[-1]
    labels, arrays = archived[name]
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(arrays["probabilities"], raw_arrays["probabilities"])  # not postprocessed

    skipped = _predict(run, images, tmp_path / "raw", "--no-postprocess", printed=printed)
    assert f"postprocessing: skipped (--no-postprocess; {run} has a postprocessing.json)" in printed[-1]
    np.testing.assert_array_equal(skipped[name][0], raw)


def test_re_exporting_an_archive_carries_its_formats_over(runtimes_archive, tmp_path, monkeypatch, capsys):
    # Nothing is converted again: the ONNX packages are not even needed.
    for module in ("onnxruntime", "onnx", "tf2onnx"):
        monkeypatch.setitem(sys.modules, module, None)
    one = export_archive(runtimes_archive, tmp_path / "onnx.zip", folds=[1], formats=["keras", "onnx"])
    assert f"onnx: carried over from {runtimes_archive}" in capsys.readouterr().out
    with zipfile.ZipFile(one) as z, zipfile.ZipFile(runtimes_archive) as original:
        manifest = json.loads(z.read("manifest.json"))
        assert z.read("fold_1/formats/model.onnx") == original.read("fold_1/formats/model.onnx")
    assert manifest["formats"] == ["keras", "onnx"]
    assert set(manifest["members"]) == {"plans.json", "fold_1/model.json", "fold_1/model.keras",
                                        "fold_1/formats/model.onnx"}  # saved_model was not asked for
    saved = export_archive(runtimes_archive, tmp_path / "saved.zip", folds=[0], formats=["keras", "saved_model"])
    with zipfile.ZipFile(saved) as z, zipfile.ZipFile(runtimes_archive) as original:
        names = [n for n in z.namelist() if n.startswith("fold_0/formats/")]
        assert "fold_0/formats/saved_model/saved_model.pb" in names
        assert all(z.read(n) == original.read(n) for n in names)
        assert names == [n for n in sorted(original.namelist()) if n.startswith("fold_0/formats/saved_model/")]
