"""Training curves PNG from the JSON-lines training log: the loss and learning rate, and the
validation pseudo Dice beside them when the fold has validation cases (fold `all` has none)."""

from __future__ import annotations

from pathlib import Path

from unet.io.atomic import atomic_path


def plot_training_curves(log: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in log]
    validated = bool(log) and "val_dice" in log[0]
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=(11 if validated else 6, 4), squeeze=False)
    ax_loss = axes[0, 0]
    ax_loss.plot(epochs, [row["loss"] for row in log], label="training loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("Dice + CE loss")
    # The schedule on a second axis: warm-up and decay show where the loss curve bends.
    ax_lr = ax_loss.twinx()
    ax_lr.plot(epochs, [row["learning_rate"] for row in log], "C1--", label="learning rate")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_ylim(bottom=0)
    handles = ax_loss.get_legend_handles_labels()[0] + ax_lr.get_legend_handles_labels()[0]
    ax_loss.legend(handles, [h.get_label() for h in handles])
    if validated:
        _plot_dice(axes[0, 1], epochs, log)
    else:
        ax_loss.set_title("trained on every case: no validation")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _plot_dice(ax_dice, epochs: list[int], log: list[dict]) -> None:
    for name in log[0]["val_dice"]:
        ax_dice.plot(epochs, [row["val_dice"][name] for row in log], alpha=0.6, label=name)
    ax_dice.plot(epochs, [row["ema_val_dice"] for row in log], "k-", lw=2, label="EMA of mean")
    ax_dice.set_xlabel("epoch")
    ax_dice.set_ylabel("validation pseudo Dice (patches)")
    ax_dice.set_ylim(0, 1)
    ax_dice.legend(fontsize="small")
