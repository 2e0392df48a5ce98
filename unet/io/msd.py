"""The Medical Segmentation Decathlon (MSD) dataset layout.

    {root}/dataset.json  imagesTr/{case}.nii.gz  labelsTr/{case}.nii.gz  imagesTs/{case}.nii.gz

Images are 4D (X, Y, Z, channel) or 3D for one channel. `dataset.json` names the channels
("modality", or nnU-Net v2's "channel_names") and the labels ({"value": "name"}); an optional
"regions" key names label sets scored as one structure ({"whole tumour": [1, 2, 3], ...}).
nnU-Net v2's optional "file_ending" (".nrrd", ".mha", ...: `unet.io.images.FILE_ENDINGS`) says
which format every listed file has, and which predictions get; without it, NIfTI (".nii.gz").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from unet.io.images import FILE_ENDINGS, NIFTI, NIFTI_ENDINGS, file_ending, strip_ending


class DatasetError(ValueError):
    """The dataset folder does not follow the MSD layout; the message names the file."""


@dataclass(frozen=True)
class Case:
    id: str
    image: Path
    label: Path | None = None


@dataclass(frozen=True)
class Dataset:
    root: Path
    name: str
    modalities: tuple[str, ...]
    labels: dict[int, str]  # label value -> name, background included
    training: tuple[Case, ...]
    test: tuple[Case, ...]
    # region name -> label values (optional dataset.json key "regions"), e.g. BraTS whole tumour
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Format of the images and labels, and of the predictions written for them.
    file_ending: str = NIFTI

    @property
    def label_values(self) -> tuple[int, ...]:
        return tuple(sorted(self.labels))

    def case(self, case_id: str) -> Case:
        for case in self.training + self.test:
            if case.id == case_id:
                return case
        raise KeyError(f"{self.root}: no case {case_id!r} in dataset.json")


def case_id(path: str | os.PathLike) -> str:
    """'./imagesTr/la_003.nii.gz' -> 'la_003' (any supported image ending)."""
    return strip_ending(path)


def _resolve(root: Path, relative: str) -> Path:
    return (root / relative).resolve() if not Path(relative).is_absolute() else Path(relative)


def load_dataset(root: str | os.PathLike) -> Dataset:
    """Read `dataset.json` under `root` and list its cases. Files are not opened here.

    Every problem with dataset.json itself (missing keys, wrong types) is listed in one error.
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing; a dataset folder needs an MSD dataset.json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{meta_path}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path}: must hold a JSON object, not {type(meta).__name__}")

    problems: list[str] = []
    channels = meta.get("modality", meta.get("channel_names"))
    missing = [key for key, value in (("modality", channels), ("labels", meta.get("labels")),
                                      ("training", meta.get("training"))) if value is None]
    problems += [f"required key {key!r} is missing" for key in missing]
    if "training" in missing and "file_ending" in meta:
        problems.append("nnU-Net v2's raw layout (cases found by file name, one file per channel) is "
                        "not read: list the cases under 'training', one file per image with its "
                        "channels in it")
    modalities = _modalities(channels, problems) if channels is not None else ()
    labels = _labels(meta["labels"], problems) if meta.get("labels") is not None else {}
    training = _training(root, meta["training"], problems) if meta.get("training") is not None \
        else ()
    test = _test(root, meta.get("test", []), problems)
    ending = _file_ending(meta.get("file_ending"), training + test, problems)
    if problems:
        raise DatasetError(f"{meta_path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return Dataset(root=root, name=str(meta.get("name", root.name)), modalities=modalities,
                   labels=labels, training=_sorted(training), test=_sorted(test),
                   regions=_regions(meta_path, meta.get("regions"), labels), file_ending=ending)


def _modalities(channels, problems: list[str]) -> tuple[str, ...]:
    """{"0": "FLAIR", "1": "T1", ...} -> names in channel order (by integer index)."""
    if not isinstance(channels, dict) or not channels:
        problems.append("'modality' must map channel indices to names, e.g. {\"0\": \"CT\"}")
        return ()
    try:
        order = sorted(channels, key=int)
    except ValueError:
        problems.append(f"'modality' keys must be channel indices 0, 1, ...; got {list(channels)}")
        return ()
    return tuple(str(channels[k]) for k in order)


def _labels(raw, problems: list[str]) -> dict[int, str]:
    """MSD {"0": "background", ...} or nnU-Net v2 {"background": 0, ...} -> {value: name}."""
    if not isinstance(raw, dict):
        problems.append("'labels' must map label values to names, e.g. {\"0\": \"background\"}")
        return {}
    try:
        labels = {int(v): str(k) for k, v in raw.items()} if _labels_by_name(raw) \
            else {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        problems.append(f"'labels' keys must be integer label values; got {list(raw)}")
        return {}
    if 0 not in labels:
        problems.append("'labels' must declare the background value 0")
    return labels


def _training(root: Path, items, problems: list[str]) -> tuple[Case, ...]:
    if not isinstance(items, list):
        problems.append("'training' must be a list of {\"image\": path, \"label\": path}")
        return ()
    cases = []
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("image"), str)
                and isinstance(item.get("label"), str)):
            problems.append(f"'training' entry {i} ({item!r}) must be "
                            f"{{\"image\": path, \"label\": path}}")
            continue
        cases.append(Case(case_id(item["image"]), _resolve(root, item["image"]),
                          _resolve(root, item["label"])))
    return tuple(cases)


def _test(root: Path, items, problems: list[str]) -> tuple[Case, ...]:
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        problems.append("'test' must be a list of image paths")
        return ()
    return tuple(Case(case_id(item), _resolve(root, item)) for item in items)


def _file_ending(declared, cases: tuple[Case, ...], problems: list[str]) -> str:
    """The declared "file_ending", which every listed file must have. MSD datasets declare none:
    their files are NIfTI, .nii.gz or .nii."""
    if declared is not None and declared not in FILE_ENDINGS:
        problems.append(f"'file_ending' is {declared!r}; supported: {', '.join(FILE_ENDINGS)}")
        return NIFTI
    allowed = NIFTI_ENDINGS if declared is None else (declared,)
    for path in (p for case in cases for p in (case.image, case.label) if p is not None):
        ending = file_ending(path)
        if ending in allowed:
            continue
        if declared is None:
            problems.append(f"{path}: not a NIfTI file; dataset.json declares another format with "
                            f"nnU-Net v2's key, e.g. \"file_ending\": \"{ending or '.nrrd'}\"")
        else:
            problems.append(f"{path}: listed, but 'file_ending' is {declared!r}")
    return declared or NIFTI


def _regions(meta_path: Path, regions, labels: dict[int, str]) -> dict[str, tuple[int, ...]]:
    """The optional "regions" key: {name: [label value, ...]} of declared foreground labels."""
    if regions is None:
        return {}
    if not isinstance(regions, dict):
        raise DatasetError(f"{meta_path}: 'regions' must map a region name to a list of label values")
    out = {}
    for name, values in regions.items():
        if not isinstance(values, list) or not values or \
                not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DatasetError(f"{meta_path}: region {name!r} must be a non-empty list of label values")
        unknown = [v for v in values if v == 0 or v not in labels]
        if unknown:
            raise DatasetError(f"{meta_path}: region {name!r} lists {unknown}, which are not "
                               f"foreground labels ({sorted(v for v in labels if v)})")
        out[str(name)] = tuple(values)
    return out


def _labels_by_name(labels: dict) -> bool:
    """nnU-Net v2 writes {"background": 0, ...}; MSD writes {"0": "background", ...}."""
    return all(isinstance(v, int) for v in labels.values())


def _sorted(cases: tuple[Case, ...]) -> tuple[Case, ...]:
    return tuple(sorted(cases, key=lambda c: c.id))


def write_dataset_json(root: str | os.PathLike, name: str, modalities: list[str],
                       labels: dict[int, str], training: list[str], test: list[str],
                       extra: dict | None = None, file_ending: str = NIFTI) -> None:
    """Write an MSD `dataset.json` for case ids whose files sit in imagesTr/labelsTr/imagesTs as
    `{case}{file_ending}` ("file_ending" is recorded unless it is NIfTI's).

    `extra` keys (e.g. "regions") are written after "labels".
    """
    from unet.io.atomic import write_json

    write_json(Path(root) / "dataset.json", {
        "name": name,
        "tensorImageSize": "4D",
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": {str(k): v for k, v in sorted(labels.items())},
        **(extra or {}),
        **({"file_ending": file_ending} if file_ending != NIFTI else {}),
        "numTraining": len(training),
        "numTest": len(test),
        "training": [{"image": f"./imagesTr/{c}{file_ending}", "label": f"./labelsTr/{c}{file_ending}"}
                     for c in training],
        "test": [f"./imagesTs/{c}{file_ending}" for c in test],
    })
