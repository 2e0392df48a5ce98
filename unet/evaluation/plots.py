"""Box plots of evaluation tables (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from unet.io.atomic import atomic_path

TITLES = {
    "dice": "Dice",
    "iou": "IoU",
    "hd95": "HD95 (mm)",
    "hd": "Hausdorff distance (mm)",
    "asd": "average surface distance (mm)",
    "ref_volume_ml": "reference volume (ml)",
    "pred_volume_ml": "predicted volume (ml)",
}
BOUNDED = ("dice", "iou")  # metrics in [0, 1]


def structure_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(display name, rows) per structure: labels sorted by value, then regions in order.

    A region that shares its name with a label (BraTS "enhancing tumour") is shown as
    "name (region)"; label and region rows are never pooled.
    """
    if not len(df):
        return []
    is_region = df["label_value"].isna()
    labels = df[~is_region]
    order = (labels.assign(_v=labels["label_value"].astype(float))
             .sort_values("_v", kind="stable")["label"].drop_duplicates().tolist())
    groups = [(str(name), labels[labels["label"] == name]) for name in order]
    regions = df[is_region]
    for name in pd.unique(regions["label"]):
        shown = f"{name} (region)" if name in order else str(name)
        groups.append((shown, regions[regions["label"] == name]))
    return groups


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_metric(df: pd.DataFrame, metric: str, path: str | os.PathLike) -> None:
    """Box plot of `metric` per label/region, each case a point; written atomically as PNG.

    nan values (undefined: see summary.json's convention) are left out, and the tick label
    says how many. Points are coloured by fold when the table has a `fold` column.
    """
    plt = _pyplot()
    groups = structure_groups(df)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(groups) + 2.0), 4.5))
    try:
        positions = np.arange(1, len(groups) + 1)
        if groups:
            data = [g[metric].dropna().to_numpy(dtype=float) for _, g in groups]
            ax.boxplot(data, positions=positions, widths=0.6, showfliers=False)
            folds = sorted(df["fold"].unique(), key=int) if "fold" in df.columns else [None]
            cmap = plt.get_cmap("tab10")
            rng = np.random.default_rng(0)
            labelled: set = set()
            for pos, (_, g) in zip(positions, groups):
                g = g[g[metric].notna()]
                for i, fold in enumerate(folds):
                    sub = g if fold is None else g[g["fold"] == fold]
                    if not len(sub):
                        continue
                    x = pos + rng.uniform(-0.15, 0.15, size=len(sub))
                    label = None
                    if fold is not None and fold not in labelled:
                        labelled.add(fold)
                        label = f"fold {int(fold)}"
                    ax.scatter(x, sub[metric], s=12, alpha=0.7, color=cmap(i % 10),
                               label=label, zorder=3)
            ticks = []
            for name, g in groups:
                missing = int(g[metric].isna().sum())
                ticks.append(f"{name}\n({missing} n/a)" if missing else name)
            ax.set_xticks(positions)
            ax.set_xticklabels(ticks, rotation=30, ha="right")
            if len(labelled) > 1:
                ax.legend(loc="best", fontsize="small")
        else:
            ax.text(0.5, 0.5, "no cases", ha="center", va="center", transform=ax.transAxes)
        if metric in BOUNDED:
            ax.set_ylim(-0.02, 1.02)
        else:
            ax.set_ylim(bottom=0)
        title = TITLES.get(metric, metric)
        ax.set_ylabel(title)
        ax.set_title(f"{title} per case")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def plot_dice(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Box plot of Dice per label/region (`plot_metric(df, "dice", path)`)."""
    plot_metric(df, "dice", path)
