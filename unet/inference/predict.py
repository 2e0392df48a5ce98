"""Predicting preprocessed cases with one or several trained models, written in the raw grid (as
NIfTI, or in the dataset's or input's own format: `unet.io.images`); the workflow's two
prediction rules (`predict_fold`, `predict_test_set`) at the end.

A 2d plan's models predict every slice along its `slice_axis` (`sliding_window_slices`), stacked
into the 3D probability volume that is restored to the raw grid like a 3D model's; test-time
mirroring then flips the two in-plane axes. A cascade's (3d_cascade_fullres) models take each
case's image with the previous stage's segmentation appended as one-hot channels
(`with_previous_stage`, `unet.preprocessing.cascade`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from unet.config import settings_from
from unet.data.splits import load_fold
from unet.io.atomic import load_npy, read_json
from unet.io.images import NIFTI, image_path, save_image
from unet.inference.errors import InputError
from unet.inference.model_info import ModelSet, load_model_set
from unet.inference.postprocess import apply_postprocessing
from unet.inference.probabilities import save_probabilities
from unet.inference.regions import check_regions, region_order
from unet.inference.restore import (labels_from_cropped, probabilities_from_cropped,
                                    probabilities_to_cropped)
from unet.inference.runtimes import RuntimePredictor, check_runtime, load_runtime
from unet.inference.sliding_window import Predictor, sliding_window_inference, sliding_window_slices
from unet.io.msd import Case, load_dataset
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.cascade import find_previous_stage, previous_stage_channels, read_previous_stage
from unet.preprocessing.plan import FULLRES, Plan
from unet.preprocessing.preprocess import preprocess_arrays

CaseInput = tuple[str, np.ndarray, CaseGeometry]


@dataclass(frozen=True)
class PredictSettings:
    overlap: float = 0.5
    blend: str = "gaussian"
    tta: bool = False
    batch_size: int = 2
    save_probabilities: bool = False   # also write {case}.npz beside each {case}.nii.gz (or other)
    # From the plan, not config: where the preprocessed image is zero in every channel (outside the
    # non-zero mask that z-scoring used), predict background. Training saw that region only as
    # background, but the zero slabs at the poles of a cropped volume can still fool the network.
    background_outside_mask: bool = False
    # Region-trained models (resolved, {name: [label values]}, in the models' channel order):
    # sigmoid probabilities per region, painted into labels by `unet.inference.regions`. From the
    # models' model.json, not config.
    regions: dict | None = None
    # Which network of each fold predicts: "final" or "best" (`unet.inference.model_info`); the
    # callers choose the files by it.
    checkpoint: str = "final"
    # From the plan, not config: the image's channels, the ones `background_outside_mask` looks
    # at (a cascade's further channels are the previous stage's segmentation). None: all.
    image_channels: int | None = None

    @classmethod
    def from_config(cls, section: dict) -> "PredictSettings":
        return settings_from(cls, section, "predict")

    @classmethod
    def for_models(cls, section: dict, models: ModelSet) -> "PredictSettings":
        """Config `predict` (`section`) for `models`: their regions (model.json) and plan."""
        return cls.from_config({**section, "regions": models.regions,
                                "background_outside_mask": models.plan.nonzero_mask,
                                "image_channels": models.plan.num_channels})


def load_models(paths: Sequence[str | Path]) -> list:
    from unet.model.saved import load_model  # imported here so that reading this module stays cheap

    return [load_model(p) for p in paths]


def _mirrorings(batch_ndim: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes of a (B, *spatial, C) batch: 8 in 3D, 4 in 2D."""
    spatial = tuple(range(1, batch_ndim - 1))
    return [axes for n in range(len(spatial) + 1) for axes in itertools.combinations(spatial, n)]


def ensemble_predictor(models: Sequence, tta: bool = False) -> Predictor:
    """Average of the models' probabilities (softmax, or sigmoid per region); with `tta`, also
    over all mirrorings of the spatial axes (8 for a 3D batch (B, X, Y, Z, C), 4 for a 2D one).
    `models` are Keras models or predictors of any runtime (`unet.inference.runtimes.load_runtime`)."""
    runs = [getattr(model, "predict_on_batch", model) for model in models]

    def predict(batch: np.ndarray) -> np.ndarray:
        flip_sets = _mirrorings(batch.ndim) if tta else [()]
        total = None
        for run in runs:
            for axes in flip_sets:
                x = np.flip(batch, axes) if axes else batch
                probs = np.asarray(run(x), dtype=np.float32)
                probs = np.flip(probs, axes) if axes else probs
                total = probs if total is None else total + probs
        return total / (len(runs) * len(flip_sets))

    return predict


def predict_case(predictor: Predictor, image: np.ndarray, patch_size: Sequence[int],
                 settings: PredictSettings, slice_axis: int | None = None) -> np.ndarray:
    """Probabilities (X, Y, Z, K) of a preprocessed image (X, Y, Z, C): the sliding window of a 3D
    predictor, or with `slice_axis` (a 2d plan's) of a 2D one over every slice along that axis."""
    if slice_axis is not None:
        return sliding_window_slices(image, predictor, patch_size, slice_axis, overlap=settings.overlap,
                                     blend=settings.blend, batch_size=settings.batch_size)
    return sliding_window_inference(image, predictor, patch_size, overlap=settings.overlap,
                                    blend=settings.blend, batch_size=settings.batch_size)


def preprocessed_inputs(preprocessed_dir: str | Path, case_ids: Sequence[str]) -> Iterator[CaseInput]:
    """Cases the preprocess stage already wrote (the validation cases of a fold)."""
    for cid in case_ids:
        yield (cid, load_npy(Path(preprocessed_dir) / f"{cid}.npy"),
               CaseGeometry.load(Path(preprocessed_dir) / f"{cid}.json"))


def raw_inputs(cases: Sequence[Case], plan: Plan) -> Iterator[CaseInput]:
    """New images (a test set, a user's scans), preprocessed in memory exactly as in training."""
    for case in cases:
        image, _, geometry = preprocess_arrays(case, plan)
        yield case.id, image, geometry


PreviousStage = Callable[[str, CaseGeometry], np.ndarray]  # (case id, geometry) -> class indices on its grid


def with_previous_stage(inputs: Iterable[CaseInput], previous: PreviousStage, num_classes: int) -> Iterator[CaseInput]:
    """`inputs` with each image's previous stage segmentation (`previous(case id, geometry)`,
    class indices on the image's grid) appended as one-hot channels of the foreground classes:
    what a cascade's network takes."""
    for cid, image, geometry in inputs:
        indices = previous(cid, geometry)
        if indices.shape != image.shape[:3]:
            raise InputError(f"case {cid}: the previous stage's segmentation has shape {indices.shape}, the "
                             f"preprocessed image {image.shape[:3]}; write the previous stage again")
        yield cid, np.concatenate([image, previous_stage_channels(indices, num_classes)], axis=-1), geometry


def check_previous_stage(plan: Plan, given: bool, argument: str) -> None:
    """A cascade's models need their previous stage's predictions (`argument`), others take none."""
    if plan.previous_stage and not given:
        raise InputError(f"the models were trained on configuration {plan.configuration}, which refines "
                         f"{plan.previous_stage}: they need the {plan.previous_stage} predictions ({argument})")
    if given and not plan.previous_stage:
        raise InputError(f"{argument} given, but the models' configuration {plan.configuration} takes no previous "
                         f"stage's predictions")


def preprocessing_plan(plans: str | Path, plan: Plan) -> Plan:
    """The plan that preprocesses the images `plan`'s models see: `plan` itself, or for a 2d plan
    the 3d_fullres plan of the same `plans` file, whose preprocessed cases its slices are taken
    from (the same spacing in-plane)."""
    if plan.slice_axis is None:
        return plan
    fullres = Plan.load(plans)
    in_plane = tuple(fullres.spacing[a] for a in plan.in_plane_axes)
    if not np.allclose(in_plane, plan.spacing):
        raise ValueError(f"{plans}: the {plan.configuration} spacing {plan.spacing} is not the {FULLRES} spacing "
                         f"{fullres.spacing} in-plane, so its slices cannot come from the {FULLRES} data")
    return fullres


def write_predictions(predictor: Predictor, inputs: Iterable[CaseInput], n_cases: int,
                      out_dir: str | Path, patch_size: Sequence[int], label_values: Sequence[int],
                      settings: PredictSettings, ending: str | Mapping[str, str] = NIFTI,
                      slice_axis: int | None = None, postprocessing: Mapping | None = None) -> list[Path]:
    """Write {out_dir}/{case}{ending} per case (the raw image's shape and affine, dataset label
    values; `ending` is a format of `unet.io.images`, one for all cases or one per case id) and,
    with `settings.save_probabilities`, {out_dir}/{case}.npz (see
    `unet.inference.restore.probabilities_from_cropped`). With `settings.regions` the predictor's
    channels are region probabilities, turned into labels by `unet.inference.regions`. With
    `slice_axis` the predictor is 2D (`predict_case`). With `postprocessing` (postprocessing.json),
    its steps are applied to each label map (not to the probabilities, as in nnU-Net)."""
    regions = settings.regions
    if regions is not None:
        check_regions(regions, label_values, where="predict regions")
        region_order(regions)  # non-nested regions fail here, before any case is predicted
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for cid, image, geometry in tqdm(inputs, total=n_cases, desc="predict", unit="case"):
        probs = predict_case(predictor, image, patch_size, settings, slice_axis)
        if settings.background_outside_mask:
            probs = background_outside(probs, image[..., :settings.image_channels], regions is not None)
        cropped = probabilities_to_cropped(probs, geometry, regions=regions is not None)
        if settings.save_probabilities:
            save_probabilities(Path(out_dir) / f"{cid}.npz",
                               probabilities_from_cropped(cropped, geometry, regions=regions is not None),
                               label_values, regions)
        case_ending = ending if isinstance(ending, str) else ending[cid]
        path = image_path(out_dir, cid, case_ending)
        labels = labels_from_cropped(cropped, geometry, label_values, regions)
        if postprocessing is not None:
            labels = apply_postprocessing(labels, postprocessing)
        save_image(path, labels, geometry.raw_affine, ending=case_ending)
        written.append(path)
    return written


def background_outside(probs: np.ndarray, image: np.ndarray, regions: bool) -> np.ndarray:
    """`probs` with background wherever `image` is zero in every channel: class 0 certain, or for
    region probabilities every region absent."""
    outside = ~np.any(image != 0, axis=-1)
    probs = probs.copy()
    probs[outside] = 0.0
    if not regions:
        probs[outside, 0] = 1.0
    return probs


def check_model_outputs(model, path, num_classes: int, regions) -> None:
    """A model trained on regions (sigmoid per region) must be predicted with those regions, and a
    label model (softmax over the classes) without: mixing them up would paint garbage. A Keras
    model's head tells its activation; another runtime's export (`RuntimePredictor`) only its
    channel count, which must be the plan's classes or the regions'."""
    if isinstance(model, RuntimePredictor):
        channels, sigmoid = model.num_outputs, regions is not None
    else:
        channels = int(model.outputs[0].shape[-1])
        head = next((layer for layer in model.layers if layer.name == "probabilities"), model.layers[-1])
        sigmoid = getattr(getattr(head, "activation", None), "__name__", "") == "sigmoid"
    if regions is None and (sigmoid or channels != num_classes):
        raise InputError(f"{path}: the model outputs {channels} {'sigmoid ' if sigmoid else ''}channel(s), not "
                         f"softmax over the plan's {num_classes} classes: it was trained with train.regions, "
                         f"but its model.json names no regions")
    if regions is not None and (not sigmoid or channels != len(regions)):
        raise InputError(f"{path}: predicting with {len(regions)} region(s) ({', '.join(regions)}), but the "
                         f"model outputs {channels} {'sigmoid' if sigmoid else 'softmax'} channel(s): it was "
                         f"not trained with these regions (its model.json)")


def predict_cases(model_paths: Sequence[str | Path], inputs: Iterable[CaseInput], n_cases: int,
                  out_dir: str | Path, patch_size: Sequence[int], label_values: Sequence[int],
                  settings: PredictSettings, ending: str | Mapping[str, str] = NIFTI,
                  slice_axis: int | None = None, *, runtime: str = "keras", threads: int | None = None,
                  postprocessing: Mapping | None = None) -> list[Path]:
    """`write_predictions` with the networks at `model_paths` (2D ones with `slice_axis`): saved Keras
    models, or exports for `runtime` ("saved_model", "onnx": `unet.inference.runtimes`; `threads`
    sizes onnxruntime's pool).

    With several models (folds), their probabilities are averaged before the argmax (or, with
    `settings.regions`, before the regions are thresholded).
    """
    if check_runtime(runtime) == "keras":
        models = load_models(model_paths)
    else:
        models = [load_runtime(path, runtime, threads) for path in model_paths]
    for path, model in zip(model_paths, models):
        check_model_outputs(model, path, len(label_values), settings.regions)
    predictor = ensemble_predictor(models, settings.tta)
    return write_predictions(predictor, inputs, n_cases, out_dir, patch_size, label_values, settings, ending,
                             slice_axis, postprocessing)


# -- The workflow's rules -------------------------------------------------------------------------
# Both predict with the run's plan (the configuration the models were trained on) and the regions
# the models were trained with (each fold's model.json), with config `predict` (`section`); the
# rules pick the checkpoint's files.

def predict_fold(model: str | Path, splits: str | Path, fold: int, preprocessed_dir: str | Path,
                 out_dir: str | Path, *, plans: str | Path, dataset_ok: str | Path, section: dict,
                 previous_dir: str | Path | None = None) -> list[Path]:
    """Rule `predict`: the validation cases of `fold`, from the preprocess stage's files, written in
    the dataset's format (`dataset_ok`). A cascade's model needs `previous_dir`, the previous
    stage's segmentations on the same grid (`unet.preprocessing.cascade.write_previous_stage`)."""
    models = load_model_set(plans, [model])
    plan = models.plan
    check_previous_stage(plan, previous_dir is not None, "previous_dir")
    settings = PredictSettings.for_models(section, models)
    cases = load_fold(splits, fold)["val"]
    # The dataset's format (validate records dataset.json's file_ending; NIfTI before it did).
    ending = read_json(dataset_ok).get("file_ending", NIFTI)
    inputs = preprocessed_inputs(preprocessed_dir, cases)
    if previous_dir is not None:
        inputs = with_previous_stage(inputs, lambda cid, _: load_npy(Path(previous_dir) / f"{cid}.npy"),
                                     plan.num_classes)
    return predict_cases(models.models, inputs, len(cases), out_dir,
                         plan.patch_size, plan.label_values, settings, ending, plan.slice_axis)


def predict_test_set(models: Sequence[str | Path], data_dir: str | Path, out_dir: str | Path, *,
                     plans: str | Path, section: dict, previous_predictions: str | Path | None = None) -> list[Path]:
    """Rule `ensemble`: the dataset's test images (imagesTs), probabilities averaged over `models`.
    A cascade's models need `previous_predictions`, the folder of the previous stage's test-set
    predictions (label maps in each case's raw geometry), brought onto each case's grid."""
    model_set = load_model_set(plans, models)
    plan = model_set.plan
    check_previous_stage(plan, previous_predictions is not None, "previous_predictions")
    settings = PredictSettings.for_models(section, model_set)
    dataset = load_dataset(data_dir)
    inputs = raw_inputs(dataset.test, preprocessing_plan(plans, plan))
    if previous_predictions is not None:
        def previous(cid: str, geometry: CaseGeometry) -> np.ndarray:
            return read_previous_stage(find_previous_stage([previous_predictions], cid, plan.previous_stage),
                                       geometry, plan)

        inputs = with_previous_stage(inputs, previous, plan.num_classes)
    return predict_cases(model_set.models, inputs, len(dataset.test), out_dir, plan.patch_size, plan.label_values,
                         settings, dataset.file_ending, plan.slice_axis)
