"""The GPU cells of docs/benchmarks.md in one process: paper-size updates per rung and variant.

    python3 benchmarks/gpu_check.py OUT_DIR [--reps 5] [--warmup 2]

Needs only torch (and numpy, pyyaml) from the machine: it imports blast_core.bench.models, not
the CLI, so a GPU image without blast's other dependencies runs it from a checkout. Cells run
from the most to the least important; OUT_DIR/gpu_check.json ({cell: bench JSON}) is rewritten as
each ends, so a run cut off by a time limit keeps what it measured. The last lines are a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blast_core.bench.models import bench_models  # noqa: E402

MADE = {"rssm.ar_net": "made"}
# (cell, family, rungs, overrides, precision, fp32 matmul precision, path)
CELLS = [
    ("mg_fp32", "minigrid", ["dv2", "bn", "ar_prior"], {}, "fp32", "highest", "fast"),
    ("mg_fp32_made", "minigrid", ["ar_prior"], MADE, "fp32", "highest", "fast"),
    ("dmc_fp32", "dmc", ["dv2", "bn", "ar_prior"], {}, "fp32", "highest", "fast"),
    ("dmc_fp32_made", "dmc", ["ar_prior"], MADE, "fp32", "highest", "fast"),
    ("mg_bf16", "minigrid", ["dv2", "ar_prior"], {}, "bf16", "highest", "fast"),
    ("mg_bf16_made", "minigrid", ["ar_prior"], MADE, "bf16", "highest", "fast"),
    ("mg_tf32", "minigrid", ["dv2", "ar_prior"], {}, "fp32", "high", "fast"),
    ("mg_tf32_made", "minigrid", ["ar_prior"], MADE, "fp32", "high", "fast"),
    ("mg_paths", "minigrid", ["dv2"], {}, "fp32", "highest", "both"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    rows, docs = [], {}
    for cell, family, rungs, overrides, precision, matmul, path in CELLS:
        torch.set_float32_matmul_precision(matmul)
        start = time.perf_counter()
        try:
            doc = bench_models("paper", family, rungs, "cuda", reps=args.reps,
                               warmup=args.warmup, path=path, precision=precision,
                               overrides=overrides, echo=lambda line: print(line, flush=True))
        except Exception:  # one broken cell must not lose the others
            traceback.print_exc()
            continue
        doc["matmul_precision"] = matmul
        docs[cell] = doc
        (args.out / "gpu_check.json").write_text(json.dumps(docs, indent=1))
        print(f"[{cell}: {time.perf_counter() - start:.0f} s]", flush=True)
        rows += [(cell, r) for r in doc["results"]]
    print(f"{'cell':14} {'rung':9} {'path':5} {'wm':>7} {'imag':>7} {'behav':>7} {'update':>7} "
          f"{'MB':>6} util")
    for cell, r in rows:
        print(f"{cell:14} {r['rung']:9} {r['path']:5} {r['world_model_ms']:7.1f} "
              f"{r['imagine_ms']:7.1f} {r['behavior_ms']:7.1f} {r['update_ms']:7.1f} "
              f"{r['peak_mb']:6.0f} {r['utilization']:.1%}")


if __name__ == "__main__":
    main()
