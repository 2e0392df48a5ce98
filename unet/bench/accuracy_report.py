"""The accuracy benchmark's scoring and report (`unet.bench.accuracy` runs it): per label, our Dice
and nnU-Net v2's side by side with the epoch times, per configuration, and the goals.

One configuration's report is `build_report`'s (`format_report` prints it); several are joined by
`combine_reports` under `configurations`, and `format_report` then prints each and a summary table
of every configuration's Dice and median epoch (`format_summary`).

Only the standard library is imported at module level.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

DICE_MARGIN = 0.01


# --- scoring ----------------------------------------------------------------------------------

def score(predictions: str | os.PathLike, data: Path, val_ids: list[str], fold: int) -> dict:
    """Per foreground label: mean Dice over the validation cases (NaN where a structure is absent
    from both left out, as nnU-Net), pooled Dice over all their voxels and mean HD95 (mm)."""
    import numpy as np

    from unet.evaluation.evaluate import evaluate_folder
    from unet.io.msd import load_dataset

    dataset = load_dataset(data)
    table = evaluate_folder(predictions, {c.id: c.label for c in dataset.training}, dataset.labels, (),
                            fold=fold, expected=val_ids)
    out = {}
    for name, rows in table.groupby("label", sort=False):
        tp, fp, fn = (int(rows[c].sum()) for c in ("tp", "fp", "fn"))
        out[name] = {"dice": float(np.nanmean(rows["dice"])) if rows["dice"].notna().any() else None,
                     "pooled_dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
                     "hd95_mm": float(np.nanmean(rows["hd95"])) if rows["hd95"].notna().any() else None,
                     "cases": {r.case: (None if math.isnan(r.dice) else float(r.dice)) for r in rows.itertuples()}}
    return out


# --- the report -----------------------------------------------------------------------------------

def _network(plan: dict) -> dict:
    """A plans.json record's network sizes; a 2d plan's also its slice_axis."""
    keys = ("spacing", "patch_size", "batch_size", "filters", "strides", "kernels")
    network = {k: plan[k] for k in keys}
    return {**network, "slice_axis": plan["slice_axis"]} if plan.get("slice_axis") is not None else network


def build_report(ours: dict, theirs: dict, dice_ours: dict, dice_theirs: dict, settings: dict,
                 machine: dict) -> dict:
    """The benchmark's JSON: per-label scores side by side, epoch and wall times, the goals."""
    ours_train = [r["epoch_time_s"] for r in ours["epochs"]]
    theirs_train = [r["train_time_s"] for r in theirs["epochs"]]
    runtime = ours["epochs"][0].get("runtime", {}) if ours["epochs"] else {}
    labels = {name: {"ours": dice_ours[name], "nnunet": dice_theirs.get(name)} for name in dice_ours}
    same_network = json.loads(json.dumps(_network(ours["plan"]))) == json.loads(json.dumps(theirs["network"]))
    dice_goal = all(v["ours"]["dice"] is not None and v["nnunet"] is not None and v["nnunet"]["dice"] is not None
                    and v["ours"]["dice"] >= v["nnunet"]["dice"] - DICE_MARGIN for v in labels.values())
    return {
        **settings,
        "machine": {**machine, "onednn": runtime.get("onednn", machine.get("onednn")),
                    # Unset here means our `train` job set it to 1 (unet.runtime.configure_tensorflow).
                    "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")},
        "network": _network(ours["plan"]), "nnunet_network": theirs["network"], "same_network": same_network,
        "nnunet_transpose_forward": theirs["transpose_forward"],
        "labels": labels,
        "epochs_ours": [{"epoch": r["epoch"], "train_time_s": r["epoch_time_s"], "loss": r["loss"]}
                        for r in ours["epochs"]],
        "epochs_nnunet": theirs["epochs"],
        "train_time_s": {"ours": sum(ours_train), "nnunet": sum(theirs_train)},
        "median_epoch_s": {"ours": _median(ours_train), "nnunet": _median(theirs_train)},
        "wall_s": {"ours": {"workflow": ours["wall_s"],
                            **{f"{k}_job": v["wall_s"] for k, v in ours["rule_times"].items()}},
                   "nnunet": theirs["wall_s"]},
        # The same work, train and predict, in CPU-seconds: what another job's load moves least.
        "cpu_s": {"ours": {f"{k}_job": v["cpu_s"] for k, v in ours["rule_times"].items()},
                  "nnunet": {"train_and_predict": theirs["cpu_s"]["train_and_predict"]}},
        "goals": {f"Dice >= nnU-Net's - {DICE_MARGIN} on every label": dice_goal,
                  "less time in training steps (median epoch)": _median(ours_train) < _median(theirs_train),
                  "same network": same_network},
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def combine_reports(reports: dict[str, dict]) -> dict:
    """Several configurations' reports (`build_report`'s, by configuration) as one: each under
    `configurations`, and every goal per configuration."""
    first = next(iter(reports.values()))
    return {"date": first["date"], "machine": first["machine"], "configurations": reports,
            "goals": {f"{name}: {goal}": met for name, r in reports.items() for goal, met in r["goals"].items()}}


def format_report(report: dict) -> str:
    """The report as text: per label both sides' Dice, pooled Dice and HD95, the epoch times, wall
    and CPU time, the load and the goals; for several configurations each, then `format_summary`."""
    if "configurations" in report:
        return "\n\n".join([*(format_report(r) for r in report["configurations"].values()), format_summary(report)])
    m, net = report["machine"], report["network"]
    configuration = f", {report['configuration']}" if report.get("configuration") else ""
    lines = [
        f"accuracy benchmark{configuration}: {report['n_cases']} cases, fold {report['fold']} "
        f"({len(report['validation_cases'])} validation cases), {report['epochs']} epochs x "
        f"{report['steps_per_epoch']} steps, batch {net['batch_size']}, patch {'x'.join(map(str, net['patch_size']))}, "
        f"filters {net['filters']}, tta {report['tta']}",
        f"  {m['cpu']} ({', '.join(m['vector_extensions']) or 'no AVX'}), {report['cores']} cores, "
        f"oneDNN {'on' if m['onednn'] else 'off'} (TF_ENABLE_ONEDNN_OPTS={m['tf_enable_onednn_opts']})",
        f"  {'label':<12} {'Dice ours':>10} {'nnU-Net':>8} {'pooled ours':>12} {'nnU-Net':>8} "
        f"{'HD95 ours':>10} {'nnU-Net':>8}",
    ]
    for name, v in report["labels"].items():
        o, t = v["ours"], v["nnunet"] or {}
        lines.append(f"  {name:<12} {_fmt(o['dice']):>10} {_fmt(t.get('dice')):>8} {_fmt(o['pooled_dice']):>12} "
                     f"{_fmt(t.get('pooled_dice')):>8} {_fmt(o['hd95_mm'], 1):>10} {_fmt(t.get('hd95_mm'), 1):>8}")
    lines.append("  training steps per epoch (s): ours "
                 + " ".join(f"{r['train_time_s']:.1f}" for r in report["epochs_ours"])
                 + "; nnU-Net " + " ".join(f"{r['train_time_s']:.1f}" for r in report["epochs_nnunet"]))
    t, med, w = report["train_time_s"], report["median_epoch_s"], report["wall_s"]
    if t["nnunet"] and med["nnunet"]:
        lines.append(f"  in training steps: median epoch ours {med['ours']:.1f} s, nnU-Net {med['nnunet']:.1f} s "
                     f"(ratio {med['ours'] / med['nnunet']:.2f}); all epochs ours {t['ours']:.1f} s, "
                     f"nnU-Net {t['nnunet']:.1f} s")
    lines.append("  wall (s): ours " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in w["ours"].items())
                 + "; nnU-Net " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in w["nnunet"].items()))
    cpu = report["cpu_s"]
    lines.append("  CPU (s): ours " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in cpu["ours"].items())
                 + "; nnU-Net " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in cpu["nnunet"].items()))
    lines.append(f"  measured {report['date']}; 1-min load average {report['load_average_before'][0]:.1f} before ours, "
                 f"{report['load_average_between'][0]:.1f} before nnU-Net, {report['load_average_after'][0]:.1f} after")
    lines.append("  goals: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in report["goals"].items()))
    return "\n".join(line for line in lines if line)




def format_summary(report: dict) -> str:
    """A Markdown table of several configurations (`combine_reports`): per label the mean Dice of
    ours and nnU-Net's in each configuration, then the median epoch in training steps (s)."""
    reports = report["configurations"]
    labels = list(next(iter(reports.values()))["labels"])
    head = "| label | " + " | ".join(f"{name} ours | {name} nnU-Net" for name in reports) + " |"
    lines = [head, "|:--|" + ":-:|" * (2 * len(reports))]
    for label in labels:
        cells = []
        for r in reports.values():
            v = r["labels"].get(label) or {}
            cells += [_fmt((v.get("ours") or {}).get("dice")), _fmt((v.get("nnunet") or {}).get("dice"))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    epochs = [_fmt(r["median_epoch_s"][side], 1) for r in reports.values() for side in ("ours", "nnunet")]
    lines.append("| median epoch (s) | " + " | ".join(epochs) + " |")
    return "\n".join(lines)
