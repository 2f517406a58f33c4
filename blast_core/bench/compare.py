"""`blast bench --baseline`: ratios of a benchmark document against an earlier one (no torch)."""

from __future__ import annotations

from typing import Any

from blast_core.errors import BlastError

METRICS = ("world_model_ms", "imagine_ms", "behavior_ms", "update_ms", "act_ms", "peak_mb",
           "reserved_mb", "flops", "gflops_per_s")


def compare(current: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Per rung present in both: baseline / current for each timing (above 1: the
    current run is faster) and current / baseline for peak_mb, flops and gflops_per_s."""
    def key(row: dict[str, Any]) -> tuple[str, str]:
        # Rows of files written before the plain path moved to the tests carry a `path`.
        return row["rung"], row.get("path", "fast")

    try:
        old = {key(r): r for r in baseline["results"]}
    except (KeyError, TypeError):
        raise BlastError("baseline file has no 'results' list of rows") from None
    out = []
    for row in current["results"]:
        if key(row) not in old:
            continue
        base = old[key(row)]
        ratios: dict[str, Any] = {"rung": row["rung"]}
        for metric in METRICS:
            if not base.get(metric) or not row.get(metric):
                continue
            faster = metric.endswith("_ms")
            ratios[metric] = base[metric] / row[metric] if faster else row[metric] / base[metric]
        out.append(ratios)
    return out
