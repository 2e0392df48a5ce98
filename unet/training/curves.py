"""Training curves PNG from the JSON-lines training log."""

from __future__ import annotations

from pathlib import Path

from unet.io.atomic import atomic_path


def plot_training_curves(log: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in log]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(11, 4))
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
    labels = list(log[0]["val_dice"]) if log else []
    for name in labels:
        ax_dice.plot(epochs, [row["val_dice"][name] for row in log], alpha=0.6, label=name)
    ax_dice.plot(epochs, [row["ema_val_dice"] for row in log], "k-", lw=2, label="EMA of mean")
    ax_dice.set_xlabel("epoch")
    ax_dice.set_ylabel("validation pseudo Dice (patches)")
    ax_dice.set_ylim(0, 1)
    ax_dice.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
