# Shared by the rules: the file layout, the case and fold lists, and per-stage params.
# Rules never build paths by hand: they call `res()` and `data()`.
import functools
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from unet.config import result_settings
from unet.data.splits import ALL
from unet.inference.model_info import CHECKPOINTS
from unet.io.datasets import known_case_ids
from unet.io.msd import DatasetError
from unet.preprocessing.plan import CONFIGURATIONS, FULLRES, configuration_names
from unet.training.pretrained import initial_weights
from unet.training.settings import resolved_recipe

TASK = config["task"]
DATA_DIR = Path(config["data_dir"]) / TASK
RESULTS_DIR = Path(config["results"]) / TASK
# FOLDS: every model trained (fold numbers and `all`, which trains on every case); the test set is
# predicted with all of them. CV_FOLDS: the cross-validation folds, predicted and evaluated.
FOLDS = config["folds"] if config["folds"] is not None else list(range(config["nfolds"]))
CV_FOLDS = [fold for fold in FOLDS if fold != ALL]


LOWRES, CASCADE = "3d_lowres", "3d_cascade_fullres"


wildcard_constraints:
    fold=r"\d+",  # rule train also takes `all`
    case=r"[^/]+?",
    configuration="|".join(CONFIGURATIONS),


def res(*parts):
    """A path under {results}/{task}/ (shared/DESIGN.md layout)."""
    return str(RESULTS_DIR.joinpath(*parts))


def log_file(*parts):
    return res("logs", *parts)


def model_file(fold="{fold}", configuration="{configuration}"):
    """The network of `fold` of `configuration` that predicts: the final one or, with
    predict.checkpoint: best, the best epoch's (unet.inference.model_info)."""
    return res(configuration, f"fold_{fold}", CHECKPOINTS[config["predict"].get("checkpoint", "final")])


# -- Configurations (nnU-Net v2's 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) -------------------
# Each trains, predicts and is evaluated under {results}/{task}/{configuration}/. Preprocessed data
# and shards are shared where the spacing is (2d and the cascade take 3d_fullres' `preprocessed/`;
# 3d_lowres has `preprocessed_3d_lowres/`); the cascade's shards also hold the 3d_lowres
# segmentation of each case (`3d_cascade_fullres/previous/`).


def preprocessed_name(configuration):
    return "preprocessed_3d_lowres" if configuration == LOWRES else "preprocessed"


def shards_name(configuration):
    return f"shards_{configuration}" if configuration in (LOWRES, CASCADE) else "shards"


# The configurations that own a data folder, the owner first where several share one (2d and the
# cascade read 3d_fullres' preprocessed cases): the plan a folder is written with.
DATA_OWNERS = (FULLRES, LOWRES, CASCADE)


def data_names(naming):
    """Every folder name `naming` (preprocessed_name, shards_name) gives, as a wildcard pattern."""
    return "|".join(sorted({naming(c) for c in DATA_OWNERS}))


def data_configuration(name, naming):
    """The configuration whose plan writes the folder `name` of `naming`."""
    return next(c for c in DATA_OWNERS if naming(c) == name)


def configurations():
    """The configurations to train, in CONFIGURATIONS order: config `configurations` (a list), or
    with `auto` every one plans.json holds (checkpoint `planned_configurations`)."""
    chosen = config.get("configurations", "auto")
    if chosen != "auto":
        return [c for c in CONFIGURATIONS if c in chosen]
    until = set(getattr(workflow.dag_settings, "until", ()) or ())
    if until - BEFORE_CASE_LIST:
        # `--until` misses the jobs a checkpoint adds (snakemake/snakemake#2824): read the plan.
        if not Path(res("plans.json")).is_file():
            raise WorkflowError(
                f"--until {' '.join(sorted(until))} with `configurations: auto`: the configurations are "
                f"known only once {res('plans.json')} exists. Run `snakemake --cores 1 plan` first, or "
                f"list the configurations in config.yaml.")
        with open(res("plans.json")) as plans:
            return list(configuration_names(json.load(plans)))
    with open(checkpoints.planned_configurations.get().output[0]) as planned:
        return json.load(planned)


def trained_configurations():
    """Those that train: the chosen ones, and 3d_lowres when the cascade is chosen (it refines
    3d_lowres' segmentation) even if 3d_lowres itself is not."""
    chosen = configurations()
    if CASCADE in chosen and LOWRES not in chosen:
        chosen = [c for c in CONFIGURATIONS if c in {*chosen, LOWRES}]
    return chosen


def selecting():
    """Whether the test set waits for a choice between configurations: several chosen and
    cross-validation folds to choose by. Then every prediction also saves its probabilities,
    which a pair ensemble averages (unet.evaluation.selection)."""
    return bool(CV_FOLDS) and len(configurations()) > 1


def predict_params(wildcards=None):
    """Config `predict` as params (result settings only), probabilities saved when selecting."""
    settings = result_settings(config, "predict")
    return {**settings, "save_probabilities": bool(settings.get("save_probabilities")) or selecting()}


def candidate_dir(name):
    """Where a candidate of the selection keeps its predictions and postprocessing.json: a
    configuration's folder, or ensembles/{a}+{b} for a pair."""
    return res(name) if "+" not in name else res("ensembles", name)


def selected():
    """The candidate whose predictions the test set gets: the only configuration, or the one (or
    pair) best_configuration.json names (a checkpoint: the choice is known once it is made; read
    each time, as a rerun of the choice rewrites it)."""
    chosen = configurations()
    if len(chosen) == 1:
        return chosen[0]
    with open(checkpoints.select_configuration.get().output[0]) as best:
        return json.load(best)["best"]["name"]


# The rules `--until` can stop at while the case list is still unknown: their jobs need none.
BEFORE_CASE_LIST = {"download", "case_list", "validate", "fingerprint", "plan"}


@functools.cache
def case_ids_up_front():
    """The case lists, if known before any job has run (unet.io.datasets.known_case_ids): from
    the demo's settings, a dataset.json on disk or a BraTS folder to convert; else None."""
    try:
        return known_case_ids(TASK, DATA_DIR, config.get("demo"), config.get("ingest"))
    except DatasetError as exc:
        raise WorkflowError(f"{type(exc).__name__}: {exc}") from None  # the message, no traceback


def case_ids():
    """(training ids, test ids) of the dataset.

    Read up front whenever possible, so that no checkpoint is in the DAG: Snakemake's `--until`
    misses the jobs a checkpoint adds (snakemake/snakemake#2824), even one that has run. Only an
    MSD task not downloaded yet (or a folder without dataset.json, which `download` then reports)
    waits for the `case_list` checkpoint.
    """
    ids = case_ids_up_front()
    if ids is not None:
        return ids
    until = set(getattr(workflow.dag_settings, "until", ()) or ())
    if until - BEFORE_CASE_LIST:
        # Snakemake would report "Nothing to be done" and exit 0: say why instead.
        raise WorkflowError(
            f"--until {' '.join(sorted(until))}: the case list of {TASK} is known only once the "
            f"dataset is on disk ({DATA_DIR}/dataset.json). Run `snakemake --cores 1 download` "
            f"first, then the same command again.")
    with open(checkpoints.case_list.get().output[0]) as cases:
        listed = json.load(cases)
    return listed["training"], listed["test"]


def training_case_ids(wildcards=None):
    return case_ids()[0]


def test_case_ids(wildcards=None):
    return case_ids()[1]


def preprocessed_files(name="preprocessed"):
    """The preprocess stage's files of every training case in the folder `name`."""
    ids = training_case_ids()
    return {
        "images": expand(res(name, "{case}.npy"), case=ids),
        "segs": expand(res(name, "{case}_seg.npy"), case=ids),
        "fg": expand(res(name, "{case}_fg.npy"), case=ids),
        "geometry": expand(res(name, "{case}.json"), case=ids),
    }


def final_targets(wildcards):
    targets = [res(c, f"fold_{fold}", "training_curves.png") for c in trained_configurations() for fold in FOLDS]
    if not CV_FOLDS:
        # Fold `all` alone: no cross-validation to evaluate, to choose by or to choose postprocessing by.
        return targets + ([res(c, "predictions", "test") for c in configurations()] if test_case_ids() else [])
    for c in configurations():
        targets += [res(c, "evaluation", "summary.json"), res(c, "evaluation", "dice.png"),
                    res(c, "postprocessing.json")]
    targets.append(res("best_configuration.json"))
    if test_case_ids():
        targets.append(res("predictions", "test_postprocessed"))
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


def init_weights(wildcards=None):
    """The model file `train.init_weights` starts training from (unet.training.pretrained), as an
    input of `train`, so that a changed file retrains; none without the setting."""
    path = config["train"].get("init_weights")
    if path is None:
        return []
    try:
        return str(initial_weights(path))
    except (FileNotFoundError, ValueError) as exc:
        raise WorkflowError(f"config train.init_weights: {exc}") from None


for fold in CV_FOLDS:
    if fold >= config["nfolds"]:
        raise ValueError(f"config folds: fold {fold} does not exist with nfolds={config['nfolds']}")
