"""The ignore label: nnU-Net v2's sparse annotation convention.

dataset.json may declare a label named "ignore" ({"background": 0, ..., "ignore": N}, or
{"N": "ignore"}), N the highest value: its voxels are unannotated. They stay in the
preprocessed seg, and are left out of the loss, of foreground sampling and of evaluation; the
network has no output for them, so prediction never paints N.
"""

from __future__ import annotations

from typing import Mapping, Sequence

IGNORE_NAME = "ignore"


def ignore_value(labels: Mapping) -> int | None:
    """The value of the label named "ignore" in {value: name} `labels`, or None."""
    values = [int(value) for value, name in labels.items() if str(name) == IGNORE_NAME]
    return values[0] if values else None


def ignore_problems(labels: Mapping, regions: Mapping[str, Sequence[int]] | None = None) -> list[str]:
    """An "ignore" label must be declared once, be the highest value and not background, and no
    region may hold it."""
    values = sorted(int(value) for value, name in labels.items() if str(name) == IGNORE_NAME)
    if not values:
        return []
    if len(values) > 1:
        return [f"'labels' names {len(values)} values {values} {IGNORE_NAME!r}; declare one ignore label"]
    value, highest = values[0], max(int(v) for v in labels)
    problems = []
    if value == 0:
        problems.append(f"'labels': the {IGNORE_NAME!r} label cannot be the background value 0")
    elif value != highest:
        problems.append(f"'labels': the {IGNORE_NAME!r} label ({value}) must have the highest value "
                        f"(highest declared: {highest}), as nnU-Net requires")
    for name, members in (regions or {}).items():
        if value in {int(v) for v in members}:
            problems.append(f"'regions': region {name!r} holds the {IGNORE_NAME!r} label {value}; "
                            f"unannotated voxels belong to no region")
    return problems
