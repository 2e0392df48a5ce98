"""Predicting a folder of new images with trained models (`python -m unet predict`).

The models come from a run's results folder (one configuration of it: `--configuration`, else
the selected one) or a model archive (`unet.inference.model_folder`), which supply everything:
`plans.json` (preprocessing, patch size, labels), `fold_{k}/model.keras` (or its SavedModel or ONNX
export under `fold_{k}/formats/`: `--runtime`), `fold_{k}/model.json` (configuration, regions) and
`postprocessing.json` (applied to the label maps when present). A pair ensemble (`a+b`) predicts
with both configurations and averages them; a cascade predicts its previous stage first. Images
follow the MSD channel layout: one file per case (NIfTI, NRRD or MetaImage: `unet.io.images`) with
the channels last or as vector components, or 3D for a single channel; a subfolder holding a DICOM
series is one case too, named after the folder. Each segmentation is written in its image's own
format and grid. Inputs are checked (folder, models, archive checksums, channel counts) before any
model is loaded, so a wrong call fails in seconds with a message naming what to fix.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tqdm import tqdm

from unet.inference.archive import POSTPROCESSING
from unet.inference.model_folder import (ONE_CONFIGURATION, ModelFolder, either, open_model_folder, pair_folder,
                                         pair_to_predict, trained_configurations)
from unet.inference.model_info import ModelSet, model_paths  # noqa: F401 (its home before model.json)
from unet.inference.postprocess import (PostprocessingError, apply_postprocessing, describe_steps, label_dtype,
                                        load_postprocessing)
from unet.inference.predict import (CaseInput, InputError, PredictSettings, predict_cases, preprocessing_plan,
                                   raw_inputs, with_previous_stage)
from unet.inference.probabilities import Probabilities, average, save_probabilities
from unet.inference.runtimes import check_runtime, runtime_path
from unet.io.images import FILE_ENDINGS, file_ending, image_ending, image_path, image_shape, load_label, save_image
from unet.io.msd import Case, case_id
from unet.preprocessing.cascade import find_previous_stage, read_previous_stage
from unet.preprocessing.geometry import CaseGeometry
from unet.preprocessing.plan import Plan


def image_cases(in_dir: str | Path) -> list[Case]:
    """One case per image file in `in_dir` and per subfolder holding a DICOM series, sorted by
    case id. Other files and folders are left alone."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise InputError(f"{in_dir}: input folder does not exist")
    paths = [p for p in in_dir.iterdir() if not p.name.startswith(".")
             and (file_ending(p) is not None if p.is_file() else _holds_dicom(p))]
    if not paths:
        raise InputError(f"{in_dir}: no images in the input folder (files ending "
                         f"{', '.join(FILE_ENDINGS)}, or subfolders holding a DICOM series)")
    cases = sorted((Case(case_id(p), p) for p in paths), key=lambda c: c.id)
    ids = [c.id for c in cases]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        names = sorted(c.image.name for c in cases if c.id in duplicated)
        raise InputError(f"{in_dir}: cases {duplicated} exist more than once ({', '.join(names)}); "
                         f"keep one image per case")
    return cases


def _holds_dicom(folder: Path) -> bool:
    """A subfolder is a case if it holds .dcm files or a DICOM series (files without ending)."""
    if any(p.suffix.lower() == ".dcm" for p in folder.iterdir()):
        return True
    import SimpleITK as sitk  # only for folders: a folder of plain files costs nothing

    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def image_channels(path: Path) -> int:
    """Channel count from the image's header (the voxels are not read)."""
    shape = image_shape(path)
    if len(shape) == 3:
        return 1
    if len(shape) == 4:
        return int(shape[3])
    raise InputError(f"{path}: expected a 3D image or a 4D image with channels last, got shape {shape}")


def check_channels(cases: Sequence[Case], plan: Plan, plans_path: str | Path) -> None:
    for case in cases:
        n = image_channels(case.image)
        if n != plan.num_channels:
            raise InputError(
                f"{case.image}: {n} channel(s), but the models were trained on {plan.num_channels} "
                f"({', '.join(plan.modalities)}; {plans_path}). Give one file per case with the "
                f"channels along the 4th axis, in that order (MSD layout)")


def runtime_files(source: ModelFolder, models: ModelSet, runtime: str) -> list[Path]:
    """The files `runtime` loads for `models`: the Keras networks themselves, or their exports
    under each fold's `formats/` (`unet.inference.archive`); InputError naming the first missing
    one and the export that writes it."""
    if check_runtime(runtime) == "keras":
        return list(models.models)
    paths = [runtime_path(model.parent / "formats", runtime) for model in models.models]
    missing = next((path for path in paths if not path.exists()), None)
    if missing is None:
        return paths
    member = missing.relative_to(source.folder).as_posix()
    held = (f"the archive's formats are {', '.join(source.manifest.get('formats', ['keras']))}"
            if source.manifest is not None else "a results folder holds the Keras networks only")
    flag = f" --configuration {source.configuration}" if source.chosen else ""
    raise InputError(f"{source.source}: no {runtime} network ({member}; {held}). Export the models "
                     f"with it, then predict from the archive: `python -m unet export -m {source.source}{flag} "
                     f"-o model.zip --formats {runtime}` (or predict with --runtime keras)")


def check_predictable(source: ModelFolder, models: ModelSet) -> None:
    """A cascade's models take the previous stage's segmentation of each image as extra input,
    which its own models predict first: they must be trained in the same run's results folder (an
    archive holds one configuration). An InputError otherwise, naming what predicts alone."""
    plan = models.plan
    if plan.previous_stage is None:
        return
    need = (f"{source.source}: the {plan.configuration} models need the {plan.previous_stage} segmentation of "
            f"each image as extra input")
    if source.manifest is not None:
        raise InputError(f"{need}, and {ONE_CONFIGURATION}: predict from the run's results folder, which holds "
                         f"the {plan.previous_stage} models too")
    root = source.plans.parent
    if plan.previous_stage not in trained_configurations(root, source.checkpoint):
        alone = [c for c in source.trained if c != plan.configuration]
        raise InputError(f"{need}, but {root / plan.previous_stage} has no trained models to predict it"
                         + (f"; choose --configuration {either(alone)}" if alone else ""))


def models_postprocessing(source: ModelFolder, postprocess: bool) -> dict | None:
    """The models' postprocessing.json when they have one and `postprocess`; says what it applies."""
    where = source.folder if source.manifest is None else source.source   # not an archive's temporary folder
    return folder_postprocessing(source.folder, where, postprocess)


def folder_postprocessing(folder: Path, where: str | Path, postprocess: bool) -> dict | None:
    """`folder`'s postprocessing.json (named `where` in messages) when it has one and `postprocess`."""
    path = folder / POSTPROCESSING
    if not path.is_file():
        print(f"postprocessing: none ({where} has no {POSTPROCESSING})")
        return None
    if not postprocess:
        print(f"postprocessing: skipped (--no-postprocess; {where} has a {POSTPROCESSING})")
        return None
    try:
        spec = load_postprocessing(path)
    except (PostprocessingError, ValueError) as exc:
        raise InputError(f"{where}: {POSTPROCESSING}: {exc}") from exc
    print(f"postprocessing ({POSTPROCESSING}): {describe_steps(spec)}")
    return spec


def predict_folder(in_dir: str | Path, out_dir: str | Path, model: str | Path,
                   folds: Sequence[int | str] | None = None, settings: PredictSettings = PredictSettings(),
                   checkpoint: str | None = None, *, runtime: str = "keras", threads: int | None = None,
                   postprocess: bool = True, configuration: str | None = None) -> list[Path]:
    """Segment every image in `in_dir` with the fold models of `model` (a results folder, a model
    archive or its unpacked folder), averaged, and write {out_dir}/{case}{its image's ending} (a
    folder {case} for a DICOM series; plus {case}.npz with `settings.save_probabilities`).
    `checkpoint`: "final" or "best" (None: an archive's own, else final); the regions come from
    the models' model.json. `configuration`: which of a run's configurations, or a pair `a+b` of
    them (None: the selected one or pair, `unet.inference.model_folder`). `runtime`: which of each
    fold's files predicts ("keras", or the "saved_model" / "onnx" export an archive holds; `threads`
    for onnxruntime). With `postprocess`, the models' postprocessing.json (when they have one) is
    applied to the label maps."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    cases = image_cases(in_dir)
    if out_dir.resolve() == in_dir.resolve():
        raise InputError(f"{out_dir}: the output folder is the input folder; predictions would "
                         f"overwrite the images. Choose another output folder")
    pair = pair_to_predict(model, configuration, checkpoint)
    if pair is not None:
        return predict_pair(cases, in_dir, out_dir, pair, folds, settings, checkpoint, runtime=runtime,
                            threads=threads, postprocess=postprocess)
    with contextlib.ExitStack() as stack:
        source = open_model_folder(model, stack, checkpoint, configuration)
        models = source.model_set(folds)
        check_predictable(source, models)
        if source.chosen:
            print(f"configuration {source.configuration} ({source.chosen}): {source.folder}")
        plans = models.plans if source.manifest is None else f"{model}: plans.json"
        check_channels(cases, models.plan, plans)
        networks = runtime_files(source, models, runtime)
        postprocessing = models_postprocessing(source, postprocess)
        plan = models.plan
        # A 2d configuration's models see slices of the images preprocessed as 3d_fullres.
        inputs = raw_inputs(cases, preprocessing_plan(models.plans, plan))
        if plan.previous_stage is not None:
            inputs = with_previous_stage_predicted(inputs, in_dir, out_dir, stack, source, plan, folds, settings,
                                                   runtime=runtime, threads=threads)
        # As the workflow does (PredictSettings.for_models): background outside the non-zero mask of
        # the image's channels (not a cascade's previous stage); the models' regions.
        settings = replace(settings, background_outside_mask=plan.nonzero_mask, regions=models.regions,
                           image_channels=plan.num_channels, checkpoint=source.checkpoint)
        return predict_cases(networks, inputs, len(cases),
                             out_dir, plan.patch_size, plan.label_values, settings,
                             {c.id: image_ending(c.image) for c in cases}, plan.slice_axis,
                             runtime=runtime, threads=threads, postprocessing=postprocessing)


def predict_pair(cases: Sequence[Case], in_dir: Path, out_dir: Path, pair: tuple[Path, tuple[str, str], str],
                 folds: Sequence[int | str] | None, settings: PredictSettings, checkpoint: str | None, *,
                 runtime: str = "keras", threads: int | None = None, postprocess: bool = True) -> list[Path]:
    """`predict_folder` for a pair ensemble (`unet.inference.model_folder.pair_to_predict`): each
    configuration predicts the cases' probabilities into a temporary folder inside `out_dir`, their
    average gives the label maps (as the workflow's `ensemble_pair`), then the pair's own
    postprocessing.json (ensembles/a+b/) applies. Probabilities are written only with
    `settings.save_probabilities` (the average)."""
    root, members, why = pair
    folder = pair_folder(root, members)
    print(f"pair ensemble {'+'.join(members)} ({why}): {', '.join(str(root / m) for m in members)}")
    postprocessing = folder_postprocessing(folder, folder, postprocess)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix=".pair-", dir=out_dir) as tmp:
        for member in members:
            predict_folder(in_dir, Path(tmp) / member, root, folds, replace(settings, save_probabilities=True),
                           checkpoint, runtime=runtime, threads=threads, postprocess=False, configuration=member)
        for case in tqdm(cases, desc="ensemble", unit="case"):
            mean = average([Probabilities.load(Path(tmp) / m / f"{case.id}.npz") for m in members])
            labels = mean.labels()
            if postprocessing is not None:
                labels = apply_postprocessing(labels, postprocessing)
            ending = image_ending(case.image)
            _, affine = load_label(image_path(Path(tmp) / members[0], case.id, ending))
            written.append(image_path(out_dir, case.id, ending))
            save_image(written[-1], labels.astype(label_dtype(labels)), affine, ending=ending)
            if settings.save_probabilities:
                save_probabilities(out_dir / f"{case.id}.npz", mean.probabilities, mean.label_values, mean.regions)
    return written


def with_previous_stage_predicted(inputs: Iterable[CaseInput], in_dir: Path, out_dir: Path,
                                  stack: contextlib.ExitStack, source: ModelFolder, plan: Plan,
                                  folds: Sequence[int | str] | None, settings: PredictSettings, *,
                                  runtime: str, threads: int | None) -> Iterator[CaseInput]:
    """A cascade's `inputs` with the previous stage's segmentation as extra channels: its models
    (the same run's, the same folds and settings) predict every image first, into a temporary
    folder inside `out_dir` that `stack` removes; each segmentation is then brought onto its
    case's grid as the workflow's rule `ensemble` does (without postprocessing, as there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    previous_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".previous-", dir=out_dir)))
    print(f"{plan.configuration} takes the {plan.previous_stage} segmentation of each image: predicting it first")
    predict_folder(in_dir, previous_dir, source.plans.parent, folds, replace(settings, save_probabilities=False),
                   source.checkpoint, runtime=runtime, threads=threads, postprocess=False,
                   configuration=plan.previous_stage)

    def previous(cid: str, geometry: CaseGeometry):
        return read_previous_stage(find_previous_stage([previous_dir], cid, plan.previous_stage), geometry, plan)

    return with_previous_stage(inputs, previous, plan.num_classes)
