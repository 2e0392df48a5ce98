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
        "fg": expand(res("preprocessed", "{case}_fg.npy"), case=ids),
        "geometry": expand(res("preprocessed", "{case}.json"), case=ids),
    }


def final_targets(wildcards):
    targets = [res("evaluation", "summary.json"), res("evaluation", "dice.png")]
    targets += expand(res("fold_{fold}", "training_curves.png"), fold=FOLDS)
    if test_case_ids():
        targets.append(res("predictions", "test"))
    return targets


def train_resources():
    """Resources of a `train` job: `train.gpus` GPUs for one process, or with `train.nodes` > 1
    one task per node (launched with srun by the script, resource `mpi`) with `train.gpus` each
    (Horovod: one task per GPU)."""
    gpus, nodes = config["train"]["gpus"], config["train"].get("nodes", 1)
    if config["train"].get("distribution") == "horovod":
        # One Horovod process per GPU (at least one per node), started by srun inside the job.
        per_node = max(1, gpus)
        extra = f"--ntasks-per-node={per_node}" + (" --gpus-per-task=1" if gpus > 0 else "")
        return {"nodes": nodes, "tasks": nodes * per_node, "mpi": "srun", "slurm_extra": extra}
    if nodes == 1:
        # No `tasks` here: with a gpu request the SLURM plugin turns it into --ntasks-per-gpu.
        return {"gpu": gpus}
    extra = "--ntasks-per-node=1" + (f" --gpus-per-task={gpus}" if gpus > 0 else "")
    return {"nodes": nodes, "tasks": nodes, "mpi": "srun", "slurm_extra": extra}


for fold in FOLDS:
    if fold >= config["nfolds"]:
        raise ValueError(f"config folds: fold {fold} does not exist with nfolds={config['nfolds']}")
