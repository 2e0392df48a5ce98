"""Training settings, built once from the validated config's `train:` section.

`train.recipe` names a set of optimizer and schedule settings (RECIPES). Precedence, key by key:
a value the config sets wins; a key it leaves out (None here) takes the recipe's value. `momentum`
and `weight_decay` are looked up for the optimizer in effect, the config's or the recipe's, so
`recipe: nnunet` with `optimizer: adam` is Adam at nnU-Net's rate, weight decay and clipping.
After `TrainSettings` is built every key holds its value (a settings object written out and read
back resolves to itself); `momentum` is None unless the optimizer is sgd, the one that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from unet.config import settings_from

# A value is the recipe's for every optimizer, or a {optimizer: value} table.
RECIPES = {
    # Adam, poly decay, no clipping; AdamW kept the weight decay it always had, and sgd (Nesterov,
    # 0.99) had none. Adam's rate is 3e-3 since the recipe ablation (docs/benchmarks.md): on the
    # accuracy benchmark it learned the thin vessel in fewer steps than 1e-3 and matched it on a 3x
    # longer schedule; the other optimizers keep the 1e-3 they always had (not measured).
    "ours": {"optimizer": "adam", "learning_rate": {"adam": 3e-3, "adamw": 1e-3, "sgd": 1e-3},
             "scheduler": "poly", "momentum": 0.99,
             "weight_decay": {"adam": 0.0, "adamw": 3e-5, "sgd": 0.0}, "grad_clip": 0.0},
    # nnU-Net v2's nnUNetTrainer: SGD with Nesterov momentum, poly 0.9 per epoch, L2 3e-5, the
    # gradient norm clipped at 12.
    "nnunet": {"optimizer": "sgd", "learning_rate": 1e-2, "scheduler": "poly", "momentum": 0.99,
               "weight_decay": 3e-5, "grad_clip": 12.0},
    # NVIDIA's TF2 nnU-Net (DeepLearningExamples, README "Training process"): Adam 3e-4 with L2
    # 1e-4 and no schedule (its --scheduler default is none), no clipping.
    "nvidia": {"optimizer": "adam", "learning_rate": 3e-4, "scheduler": "constant", "momentum": 0.99,
               "weight_decay": 1e-4, "grad_clip": 0.0},
}
RECIPE_KEYS = ("optimizer", "learning_rate", "scheduler", "momentum", "weight_decay", "grad_clip")


def recipe_value(recipe: str, key: str, optimizer: str | None):
    """The value `recipe` gives `key` when training with `optimizer`."""
    if recipe not in RECIPES:
        raise ValueError(f"config train.recipe: unknown recipe {recipe!r} ({', '.join(RECIPES)})")
    value = RECIPES[recipe][key]
    if not isinstance(value, dict):
        return value
    if optimizer not in value:
        raise ValueError(f"config train.optimizer: unknown optimizer {optimizer!r} ({', '.join(value)})")
    return value[optimizer]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 50
    steps_per_epoch: int = 250
    recipe: str = "ours"             # fills the keys below left at None (module docstring)
    learning_rate: float | None = None
    optimizer: str | None = None     # adam | adamw | sgd
    scheduler: str | None = None     # poly | constant | cosine
    momentum: float | None = None    # sgd's (Nesterov); None for adam and adamw
    weight_decay: float | None = None  # L2 on the gradient (adam, sgd) or decoupled (adamw); 0: none
    grad_clip: float | None = None   # global norm of the averaged gradients is clipped to this; 0: off
    warmup_epochs: int = 0
    amp: bool | str = False          # false | true (float16) | "float16" | "bfloat16"
    xla: bool = False
    deep_supervision: bool = True
    batch_dice: bool = False
    regions: object = None           # None | "dataset" | {name: [label values]}: sigmoid per region
    distribution: str = "auto"       # auto | mirrored | multiworker | horovod
    deterministic: bool = False
    elastic: bool = False
    augment: bool = True
    oversampling: float = 0.33
    oversampling_rule: str = "bernoulli"  # bernoulli (each patch) | nnunet (the last of each batch)
    patches_per_case: int = 1        # consecutive patches cut from one case; 1: a case per patch
    seed: int = 0
    gpus: int = 1                    # per process (per node when nodes > 1)
    nodes: int = 1                   # > 1: one process per node, MultiWorkerMirroredStrategy (SLURM)
    resume: bool = False
    # A model (file or folder) to start from where layers match: unet.training.pretrained.
    init_weights: str | None = None
    validation_patches: int = 32
    # Memory for the input pipeline's decoded cases (MB), from the job's resources, not config:
    # None = unet.data.pipeline's default.
    input_memory_mb: int | None = None

    def __post_init__(self):
        optimizer = self.optimizer or recipe_value(self.recipe, "optimizer", None)
        if self.momentum is not None and optimizer != "sgd":
            raise ValueError(f"config train.momentum: only the sgd optimizer has a momentum, not {optimizer}; "
                             "remove train.momentum or set train.optimizer: sgd")
        for key in RECIPE_KEYS:
            if getattr(self, key) is None and not (key == "momentum" and optimizer != "sgd"):
                # A frozen dataclass: its own __post_init__ may still complete it.
                object.__setattr__(self, key, recipe_value(self.recipe, key, optimizer))

    @classmethod
    def from_config(cls, section: dict) -> "TrainSettings":
        return settings_from(cls, section, "train")


def resolved_recipe(section: dict) -> dict:
    """A `train:` section with its recipe resolved: the six keys it fills (RECIPE_KEYS) set to their
    values and `recipe` itself left out. As a rule's params this says what the section means for the
    model, so that spelling out a value the recipe gives anyway reruns nothing, and a new recipe
    default reruns what it changes."""
    settings = TrainSettings.from_config(section)
    rest = {key: value for key, value in section.items() if key != "recipe" and key not in RECIPE_KEYS}
    return {**rest, **{key: getattr(settings, key) for key in RECIPE_KEYS}}
