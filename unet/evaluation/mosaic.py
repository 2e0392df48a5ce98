"""A mosaic of the worst cases: image, reference and prediction on the most telling slice.

The worst cases are those with the lowest mean foreground Dice (mean over labels, not regions,
of the case's defined Dice values). For each, the slice shown is the axial slice (canonical RAS
orientation, so the same anatomical plane whatever the file's voxel order) where prediction and
reference disagree on the most voxels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from unet.io.atomic import atomic_path
from unet.io.images import load_image, load_label, voxel_spacing
from unet.io.orientation import Reorientation

AXIAL = 2  # the S axis of RAS


def worst_cases(df: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """Up to `n` cases with the lowest mean foreground Dice: columns case, fold, mean_dice.

    Region rows are ignored; cases whose label Dice values are all nan cannot be ranked and are
    left out. Ties are broken by case id.
    """
    labels = df[df["label_value"].notna() & df["dice"].notna()]
    keys = ["case", "fold"] if "fold" in df.columns else ["case"]
    means = labels.groupby(keys, as_index=False)["dice"].mean().rename(columns={"dice": "mean_dice"})
    if "fold" not in means.columns:
        means["fold"] = pd.NA
    means = means.sort_values(["mean_dice", "case"], kind="stable").head(max(int(n), 0))
    return means[["case", "fold", "mean_dice"]].reset_index(drop=True)


def disagreement_slice(pred: np.ndarray, ref: np.ndarray, axis: int = AXIAL) -> int:
    """Index along `axis` of the slice where `pred` and `ref` differ on most voxels.

    Without any disagreement: the slice with the most foreground in either; the middle slice
    when both are empty.
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    other = tuple(a for a in range(pred.ndim) if a != axis)
    differ = np.count_nonzero(pred != ref, axis=other)
    if differ.any():
        return int(np.argmax(differ))
    foreground = np.count_nonzero((pred != 0) | (ref != 0), axis=other)
    if foreground.any():
        return int(np.argmax(foreground))
    return pred.shape[axis] // 2


@dataclass(frozen=True)
class CaseView:
    """One case's slice for display: 2D arrays indexed (row = y, column = x)."""

    case: str
    fold: int | None
    mean_dice: float
    slice_index: int
    image: np.ndarray
    ref: np.ndarray
    pred: np.ndarray
    aspect: float = 1.0  # row spacing / column spacing, so that a millimetre is square on screen


def case_view(case: str, fold: int | None, mean_dice: float, image: np.ndarray,
              ref: np.ndarray, pred: np.ndarray, affine: np.ndarray) -> CaseView:
    """The axial slice of most disagreement of a raw case (image (X, Y, Z[, C]), label maps)."""
    orient = Reorientation.from_affine(affine)
    image = np.asarray(image)
    image = orient.apply(image[..., 0] if image.ndim == 4 else image)
    ref = orient.apply(np.asarray(ref))
    pred = orient.apply(np.asarray(pred))
    index = disagreement_slice(pred, ref, AXIAL)
    # RAS (x, y) -> display rows y, columns x; shown with origin="lower" (anterior up).
    take = lambda a: np.ascontiguousarray(a[:, :, index].T)  # noqa: E731
    spacing = orient.spacing(voxel_spacing(affine))
    return CaseView(case=case, fold=None if fold is None or pd.isna(fold) else int(fold),
                    mean_dice=float(mean_dice), slice_index=index,
                    image=take(image), ref=take(ref), pred=take(pred),
                    aspect=spacing[1] / spacing[0])


def load_case_view(case: str, fold: int | None, mean_dice: float, image_path: str | os.PathLike,
                   ref_path: str | os.PathLike, pred_path: str | os.PathLike) -> CaseView:
    """Read a case's raw image (first channel is shown), reference and prediction."""
    image, affine = load_image(image_path)
    ref, _ = load_label(ref_path)
    pred, _ = load_label(pred_path)
    if not image.shape[:3] == ref.shape == pred.shape:
        raise ValueError(f"case {case}: shapes differ: image {image_path} {image.shape[:3]}, "
                         f"reference {ref_path} {ref.shape}, prediction {pred_path} {pred.shape}")
    return case_view(case, fold, mean_dice, image, ref, pred, affine)


def _overlay(labels2d: np.ndarray, colours: Mapping[int, tuple]) -> np.ndarray:
    rgba = np.zeros(labels2d.shape + (4,), dtype=float)
    for value, colour in colours.items():
        rgba[labels2d == value] = (*colour[:3], 0.55)
    return rgba


def plot_worst_cases(views: Sequence[CaseView], labels: Mapping[int, str],
                     path: str | os.PathLike) -> None:
    """Mosaic PNG, one row per case: image, reference overlay, prediction overlay."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    foreground = sorted((int(v), str(n)) for v, n in labels.items() if int(v) != 0)
    cmap = plt.get_cmap("tab10")
    colours = {v: cmap(i % 10) for i, (v, _) in enumerate(foreground)}
    rows = max(len(views), 1)
    fig, axes = plt.subplots(rows, 3, figsize=(9.0, 3.0 * rows + 0.6), squeeze=False)
    try:
        if not views:
            for ax in axes[0]:
                ax.axis("off")
            axes[0, 1].text(0.5, 0.5, "no cases", ha="center", va="center")
        for row, view in zip(axes, views):
            finite = view.image[np.isfinite(view.image)]
            lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
            for ax, title, overlay in ((row[0], "image", None), (row[1], "reference", view.ref),
                                       (row[2], "prediction", view.pred)):
                ax.imshow(view.image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                          origin="lower", interpolation="nearest", aspect=view.aspect)
                if overlay is not None:
                    ax.imshow(_overlay(overlay, colours), origin="lower", interpolation="nearest",
                              aspect=view.aspect)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(title, fontsize="small")
            fold = "" if view.fold is None else f", fold {view.fold}"
            row[0].set_ylabel(f"{view.case}{fold}\nDice {view.mean_dice:.3f}, z {view.slice_index}",
                              fontsize="small")
        handles = [Patch(color=colours[v], label=name) for v, name in foreground]
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4),
                       fontsize="small", frameon=False)
        fig.suptitle("Worst cases by mean foreground Dice (axial slice of most disagreement)",
                     fontsize="medium")
        fig.tight_layout(rect=(0, 0.6 / (3.0 * rows + 0.6), 1, 1))
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def worst_case_mosaic(df: pd.DataFrame, images: Mapping[str, str | os.PathLike],
                      references: Mapping[str, str | os.PathLike],
                      predictions: Mapping[tuple[str, int], str | os.PathLike],
                      labels: Mapping[int, str], path: str | os.PathLike, n: int = 4) -> pd.DataFrame:
    """Select the `n` worst cases of `df`, read their files and write the mosaic to `path`.

    `images`/`references` map case id -> raw image / label file; `predictions` maps
    (case id, fold) -> prediction file. Returns the selection (`worst_cases`).
    """
    chosen = worst_cases(df, n)
    views = []
    for case, fold, mean_dice in chosen.itertuples(index=False):
        key = (case, None if pd.isna(fold) else int(fold))
        if key not in predictions:
            raise ValueError(f"case {case!r} fold {key[1]}: no prediction file to show")
        views.append(load_case_view(case, key[1], mean_dice, images[case], references[case],
                                    predictions[key]))
    plot_worst_cases(views, labels, path)
    return chosen
