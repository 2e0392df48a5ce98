# Shared by the rules: the file layout, the case and fold lists, and per-stage params.
# Rules never build paths by hand: they call `res()` and `data()`.
from pathlib import Path

from unet.io.msd import load_dataset

TASK = config["task"]
DATA_DIR = Path(config["data_dir"]) / TASK
RESULTS_DIR = Path(config["results"]) / TASK
FOLDS = config["folds"] if config["folds"] is not None else list(range(config["nfolds"]))


wildcard_constraints:
    fold=r"\d+",
    case=r"[^/]+?",


def res(*parts):
    """A path under {results}/{task}/ (shared/DESIGN.md layout)."""
    return str(RESULTS_DIR.joinpath(*parts))


def log_file(*parts):
    return res("logs", *parts)


def dataset():
    """The dataset, once the download checkpoint has made it available."""
    checkpoints.download.get()
    return load_dataset(DATA_DIR)


def training_case_ids(wildcards=None):
    return [case.id for case in dataset().training]


def test_case_ids(wildcards=None):
    return [case.id for case in dataset().test]


def preprocessed_files(wildcards):
    ids = training_case_ids()
    return {
        "images": expand(res("preprocessed", "{case}.npy"), case=ids),
        "segs": expand(res("preprocessed", "{case}_seg.npy"), case=ids),
        "geometry": expand(res("preprocessed", "{case}.json"), case=ids),
    }


def final_targets(wildcards):
    targets = [res("evaluation", "summary.json"), res("evaluation", "dice.png")]
    targets += expand(res("fold_{fold}", "training_curves.png"), fold=FOLDS)
    if test_case_ids():
        targets.append(res("predictions", "test"))
    return targets


for fold in FOLDS:
    if fold >= config["nfolds"]:
        raise ValueError(f"config folds: fold {fold} does not exist with nfolds={config['nfolds']}")
