"""The planner: a dataset fingerprint in, plans.json out (`make_plans`, the rule's `write_plans`).

Each configuration nnU-Net v2 would plan (`unet.preprocessing.configurations`) is a Plan, found by
the search of `unet.preprocessing.search` from its neighbours' answers: `spacing` (the target
spacing), `topology` (strides and kernels for a patch), `memory` (what a patch, batch and network
cost on the GPU) and `normalization` (the scheme per channel). This module applies the config's
`plan:` overrides and lays the plans out in plans.json (see `unet.preprocessing.plan`).
"""

from __future__ import annotations

import os
from typing import Any

from unet.io.atomic import read_json, write_json
from unet.preprocessing.configurations import NETWORK_OVERRIDES, SIZED_SEPARATELY, plan_configurations
from unet.preprocessing.plan import FULLRES, Plan

OVERRIDABLE = ("spacing", "patch_size", "batch_size", "filters", "max_filters", "gpu_memory_gb",
               "normalization", "use_mask", "2d", "3d_lowres")


def _layout(plans: dict[str, Plan]) -> dict:
    """3d_fullres at the top level, the other configurations under `configurations`."""
    return {**plans[FULLRES].to_json(),
            "configurations": {name: plan.to_json() for name, plan in plans.items() if name != FULLRES}}


def make_plans(fingerprint: dict, overrides: dict[str, Any] | None = None) -> dict:
    """plans.json content: every configuration with config `plan:` (`overrides`) applied, plus
    `planned` (the same without overrides) and `overrides`.

    `planned` is what the planner chooses with no config at all (a DEFAULT_GPU_MEMORY_GB GPU);
    the top level applies every override, `gpu_memory_gb` included. Which overrides reach which
    configuration: see `unet.preprocessing.configurations`.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    for section in SIZED_SEPARATELY:
        extra = set(overrides.get(section) or {}) - set(NETWORK_OVERRIDES)
        if extra:
            raise ValueError(f"config plan.{section}: unknown keys {sorted(extra)}; allowed: {list(NETWORK_OVERRIDES)}")
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"config plan: unknown keys {sorted(unknown)}; allowed: {list(OVERRIDABLE)}")
    effective = _layout(plan_configurations(fingerprint, overrides))
    return {**effective, "planned": _layout(plan_configurations(fingerprint, {})), "overrides": overrides}


# What the `plan` rule's log shows of the planned and the effective plan, and of each other configuration.
SHOWN = ("spacing", "median_shape", "patch_size", "batch_size", "filters", "strides", "gpu_memory_gb",
         "memory_estimate_gb")


def write_plans(fingerprint: str | os.PathLike, out: str | os.PathLike,
                overrides: dict[str, Any] | None = None) -> dict:
    """Rule `plan`: `make_plans` from the fingerprint file with config `plan` (`overrides`),
    written to `out` (plans.json) and returned; the planned and effective 3d_fullres choices
    printed, then each other configuration's (effective)."""
    plans = make_plans(read_json(fingerprint), dict(overrides or {}))
    write_json(out, plans)
    shown = [("planned", plans["planned"]), ("effective", plans), *plans["configurations"].items()]
    for name, plan in shown:
        print(name, {k: plan[k] for k in SHOWN})
    print("overrides", plans["overrides"])
    return plans
