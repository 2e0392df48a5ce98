"""Plots of evaluation tables (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from unet.io.atomic import atomic_path


def _groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Labels sorted by value, then regions in order of appearance."""
    is_region = df["label_value"].isna()
    labels = df[~is_region]
    order = (labels.assign(_v=labels["label_value"].astype(float))
             .sort_values("_v", kind="stable")["label"].drop_duplicates().tolist())
    order += [n for n in pd.unique(df.loc[is_region, "label"]) if n not in order]
    return [(str(name), df[df["label"] == name]) for name in order]


def plot_dice(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Box plot of Dice per label/region with each case as a point; written atomically as PNG.

    nan Dice (empty reference and prediction) is left out, as in the summary. Points are
    coloured by fold when the table has a `fold` column.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(df) if len(df) else []
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(groups) + 2.0), 4.5))
    try:
        positions = np.arange(1, len(groups) + 1)
        data = [g["dice"].dropna().to_numpy(dtype=float) for _, g in groups]
        if groups:
            ax.boxplot(data, positions=positions, widths=0.6, showfliers=False)
            folds = sorted(df["fold"].unique(), key=int) if "fold" in df.columns else [None]
            cmap = plt.get_cmap("tab10")
            rng = np.random.default_rng(0)
            labelled: set = set()
            for pos, (_, g) in zip(positions, groups):
                g = g[g["dice"].notna()]
                for i, fold in enumerate(folds):
                    sub = g if fold is None else g[g["fold"] == fold]
                    if not len(sub):
                        continue
                    x = pos + rng.uniform(-0.15, 0.15, size=len(sub))
                    label = None
                    if fold is not None and fold not in labelled:
                        labelled.add(fold)
                        label = f"fold {int(fold)}"
                    ax.scatter(x, sub["dice"], s=12, alpha=0.7, color=cmap(i % 10),
                               label=label, zorder=3)
            ax.set_xticks(positions)
            ax.set_xticklabels([name for name, _ in groups], rotation=30, ha="right")
            if len(folds) > 1:
                ax.legend(loc="lower right", fontsize="small")
        else:
            ax.text(0.5, 0.5, "no cases", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("Dice")
        ax.set_title("Dice per case")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
