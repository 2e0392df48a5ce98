"""The runtimes (Keras, SavedModel, ONNX): exports checked against Keras, loaded back as predictors,
and whole volumes predicted through the sliding window with each. The ONNX tests need the `onnx`
extra (`make onnx-env`, which `make test` installs) and are skipped only where it is absent."""

import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest

from unet.inference.predict import PredictSettings, ensemble_predictor, preprocessed_inputs, write_predictions
from unet.inference.runtime_export import (DEFAULT_TOLERANCE, ExportMismatch, central_patch, export_runtime,
                                           export_runtimes, float32_model, validation_patches)
from unet.inference.runtimes import (RUNTIMES, RuntimeUnavailable, available_runtimes, load_runtime,
                                     onnx_available, runtime_path)
from unet.io.atomic import load_npy

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
needs_onnx = pytest.mark.skipif(not onnx_available(), reason="the onnx extra is not installed (make onnx-env)")
EXPORTED = [pytest.param(r, marks=needs_onnx) if r == "onnx" else r for r in RUNTIMES]


@pytest.fixture(scope="module")
def model_path(trained_results):
    return trained_results / "fold_0" / "model.keras"


@pytest.fixture(scope="module")
def patches(preprocessed_demo):
    case = preprocessed_demo.dataset.training[0].id
    plan = preprocessed_demo.plan
    return validation_patches(plan.patch_size, plan.num_channels, load_npy(preprocessed_demo.preprocessed / f"{case}.npy"))


@pytest.fixture(scope="module")
def exported(model_path, patches, tmp_path_factory):
    """The demo model exported to every runtime installed: (folder, {runtime: ExportCheck})."""
    folder = tmp_path_factory.mktemp("exports")
    checks = export_runtimes(model_path, folder, available_runtimes(), patches)
    return folder, {c.runtime: c for c in checks}


def test_validation_patches_hold_a_random_batch_and_the_centre_of_a_real_image():
    image = np.arange(10 * 20 * 6 * 2, dtype=np.float32).reshape(10, 20, 6, 2)
    patches = validation_patches((8, 8, 8), 2, real=image, seed=1)
    assert patches["random"].shape == (2, 8, 8, 8, 2) and patches["random"].dtype == np.float32
    real = patches["real"]
    assert real.shape == (1, 8, 8, 8, 2)
    np.testing.assert_array_equal(real[0, :, :, 1:7], image[1:9, 6:14, :])  # centred along x and y
    assert not real[0, :, :, 0].any() and not real[0, :, :, 7].any()  # z (6 < 8) zero-padded, 1 each side
    np.testing.assert_array_equal(central_patch(image, (10, 20, 6))[0], image)
    assert "real" not in validation_patches((8, 8, 8), 2)


@pytest.mark.parametrize("runtime", EXPORTED)
def test_each_export_matches_keras_on_a_random_and_a_real_patch(runtime, exported, model_path, patches,
                                                                 preprocessed_demo):
    import keras

    folder, checks = exported
    check = checks[runtime]
    assert check.path == str(runtime_path(folder, runtime))
    assert set(check.max_abs_diff) == {"random", "real"}
    assert check.worst < DEFAULT_TOLERANCE
    assert runtime in check.summary() and "real" in check.summary()
    # The check compared something worth comparing: the network's probabilities vary over the patch.
    reference = keras.saving.load_model(str(model_path), compile=False)
    real_probs = reference.predict_on_batch(patches["real"])
    assert np.ptp(real_probs) > 0.1
    predictor = load_runtime(check.path, runtime)
    assert predictor.runtime == runtime and predictor.num_outputs == preprocessed_demo.plan.num_classes
    # Any batch size, and what the check measured.
    for batch in (patches["random"][:1], patches["random"], patches["real"]):
        np.testing.assert_allclose(predictor(batch), reference.predict_on_batch(batch), atol=1e-4, rtol=0)
    assert np.max(np.abs(predictor(patches["real"]) - real_probs)) == pytest.approx(check.max_abs_diff["real"], abs=1e-7)


def test_the_saved_model_serves_image_to_probabilities_from_tensorflow_alone(exported, preprocessed_demo):
    """What TF Serving calls: the `serving_default` signature, loaded by TensorFlow (no unet code)."""
    folder, _ = exported
    plan = preprocessed_demo.plan
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        sig = tf.saved_model.load({str(runtime_path(folder, 'saved_model'))!r}).signatures["serving_default"]
        print(sorted(sig.structured_input_signature[1]), sorted(sig.structured_outputs))
        out = sig(image=tf.zeros((3, 16, 16, 16, {plan.num_channels})))["probabilities"]
        print(out.shape, out.dtype.name, sorted(m for m in sys.modules if m.startswith("unet")))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['image'] ['probabilities']", f"(3, 16, 16, 16, {plan.num_classes}) float32 []"]


@needs_onnx
def test_the_onnx_export_names_its_tensors_and_predicts_without_tensorflow(exported, patches, preprocessed_demo):
    folder, _ = exported
    path = runtime_path(folder, "onnx")
    np.save(folder.parent / "batch.npy", patches["real"])
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import onnx
        from unet.inference.runtimes import load_runtime
        graph = onnx.load({str(path)!r}).graph
        print([i.name for i in graph.input], [o.name for o in graph.output])
        probs = load_runtime({str(path)!r}, "onnx", threads=1)(np.load({str(folder.parent / 'batch.npy')!r}))
        print(probs.shape, probs.dtype, sorted({{"tensorflow", "keras"}} & set(sys.modules)))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['image'] ['probabilities']", f"(1, 16, 16, 16, {preprocessed_demo.plan.num_classes}) float32 []"]


def test_sliding_window_label_maps_of_every_runtime_equal_keras(exported, model_path, preprocessed_demo, tmp_path):
    folder, checks = exported
    plan = preprocessed_demo.plan
    ids = [case.id for case in preprocessed_demo.dataset.training]
    settings = PredictSettings(overlap=0.5, batch_size=2, save_probabilities=True)
    written = {}
    for runtime, path in [("keras", model_path)] + [(r, checks[r].path) for r in checks if r != "keras"]:
        predictor = ensemble_predictor([load_runtime(path, runtime)])
        written[runtime] = write_predictions(predictor, preprocessed_inputs(preprocessed_demo.preprocessed, ids),
                                             len(ids), tmp_path / runtime, plan.patch_size, plan.label_values, settings)
    assert set(written) == set(available_runtimes())
    for runtime in written:
        for keras_file, file in zip(written["keras"], written[runtime]):
            labels, reference = (np.asarray(nib.load(f).dataobj) for f in (file, keras_file))
            probs, reference_probs = (np.load(f.with_name(f.name.replace(".nii.gz", ".npz")))["probabilities"]
                                      for f in (file, keras_file))
            assert len(np.unique(reference)) > 1  # the network paints more than one label
            if runtime == "saved_model":  # the same TensorFlow graph: bit for bit
                np.testing.assert_array_equal(labels, reference)
                np.testing.assert_array_equal(probs, reference_probs)
                continue
            assert np.max(np.abs(probs - reference_probs)) < DEFAULT_TOLERANCE
            # Labels can only differ where Keras' two likeliest classes are closer than the tolerance.
            top2 = np.sort(reference_probs, axis=0)[-2:]
            decided = (top2[1] - top2[0]) > 2 * DEFAULT_TOLERANCE
            np.testing.assert_array_equal(labels[decided], reference[decided])
            assert decided.mean() > 0.99


def test_an_export_above_the_tolerance_fails_and_writes_nothing(model_path, patches, tmp_path, monkeypatch):
    import unet.inference.runtime_export as runtime_export

    real_load = runtime_export.load_runtime

    def off_by_a_little(path, runtime, threads=None):
        predictor = real_load(path, runtime, threads)
        return lambda batch: predictor(batch) + np.float32(3e-4)

    monkeypatch.setattr(runtime_export, "load_runtime", off_by_a_little)
    target = tmp_path / "saved_model"
    with pytest.raises(ExportMismatch, match=r"saved_model export of .*model\.keras to .*saved_model: max abs "
                                             r"difference .* 0\.0003 on the random patch, 0\.0003 on the real "
                                             r"patch exceeds the tolerance 0\.0001; the export was not written"):
        export_runtime(model_path, "saved_model", target, patches)
    assert list(tmp_path.iterdir()) == []  # no export, no temporary folder
    check = export_runtime(model_path, "saved_model", target, patches, tolerance=1e-3)
    assert 2.9e-4 < check.worst < 3.1e-4 and (target / "saved_model.pb").is_file()


def test_a_mixed_precision_network_is_exported_in_float32(tmp_path, patches):
    import keras

    from unet.model.network import build_unet

    keras.utils.set_random_seed(1)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build_unet(patches["real"].shape[-1], 3, [4, 8], [[1, 1, 1], [2, 2, 2]], [[3, 3, 3]] * 2)
    finally:
        keras.config.set_dtype_policy("float32")
    full = float32_model(mixed)
    assert {layer.dtype_policy.name for layer in full.layers} == {"float32"}
    assert float32_model(full) is full
    bf16_gap = np.max(np.abs(mixed.predict_on_batch(patches["real"]) - full.predict_on_batch(patches["real"])))
    assert bf16_gap > 1e-3  # bfloat16 rounding: an export in it could not meet the tolerance
    check = export_runtime(mixed, "saved_model", tmp_path / "saved_model", patches)
    assert check.worst < DEFAULT_TOLERANCE
    kept = export_runtime(mixed, "keras", tmp_path / "model.keras", patches)  # the Keras file as trained
    assert kept.worst == 0
    assert keras.saving.load_model(tmp_path / "model.keras").get_layer("enc0a_conv").dtype_policy.name == "mixed_bfloat16"


def test_a_missing_onnxruntime_says_how_to_install_it(tmp_path, model_path, patches, monkeypatch):
    for module in ("onnxruntime", "onnx", "tf2onnx"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    assert not onnx_available() and available_runtimes() == ["keras", "saved_model"]
    (tmp_path / "model.onnx").write_bytes(b"not read")
    with pytest.raises(RuntimeUnavailable, match=r"the ONNX runtime needs the Python package `onnxruntime`, "
                                                 r"which is not installed .*make onnx-env.*envs/onnx\.txt"):
        load_runtime(tmp_path / "model.onnx", "onnx")
    with pytest.raises(RuntimeUnavailable, match=r"exporting to ONNX needs the Python package `tf2onnx`.*make onnx-env"):
        export_runtime(model_path, "onnx", tmp_path / "out.onnx", patches)
    assert not (tmp_path / "out.onnx").exists()


def test_unknown_runtime_and_missing_model():
    with pytest.raises(ValueError, match="runtime must be one of keras, saved_model, onnx; got 'tflite'"):
        load_runtime("model.tflite", "tflite")
    with pytest.raises(FileNotFoundError, match="nowhere.onnx: no onnx model here"):
        load_runtime("nowhere.onnx", "onnx")
