"""The paper's figures as pure functions: numbers in, a matplotlib Figure and the exact numbers out.

Each function takes the DataFrame (or arrays) computed by `frames.py` / `gather.py` and returns
`(Figure, DataFrame)`, where the DataFrame holds exactly what is drawn and is written as the CSV.
Figures are built with `matplotlib.figure.Figure` rather than pyplot, so nothing global changes and
no display is needed.

Missing runs are drawn as missing: a hatched `n/a` slot in place of the bar, a `no data` note in
a curve panel's title, an `n/a` image panel. Never a zero.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from blast_core.report.frames import env_label, series_label

# One colour per rung in every figure (seaborn's "deep" palette, colour-blind safe in order).
RUNG_COLORS = {
    "dv2": "#4c72b0",
    "no_recon": "#dd8452",
    "stop_grad": "#55a868",
    "target": "#c44e52",
    "bn": "#8172b3",
    "ar_prior": "#937860",
    "latent_only": "#da8bc3",
}


# Variants of a rung (`--compare-settings`) take colours of another palette (ColorBrewer's Dark2).
VARIANT_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


def rung_label(rung: str, labels: dict[str, str] | None = None) -> str:
    """The paper's label of a rung (or a variant of one), unless the figure renames it."""
    if labels and rung in labels:
        return labels[rung]
    return series_label(rung)


def rung_color(key: str, keys: Sequence[str] = ()) -> str:
    """A rung's colour; the variants among `keys` take VARIANT_COLORS in their order."""
    if key in RUNG_COLORS:
        return RUNG_COLORS[key]
    variants = [k for k in dict.fromkeys(keys) if k not in RUNG_COLORS]
    return VARIANT_COLORS[variants.index(key) % len(VARIANT_COLORS)] if key in variants else "0.5"


def add_caption(fig: Figure, text: str) -> None:
    """The figure's rules in small print under it, wrapped to its width (constrained layout)."""
    chars = int(fig.get_figwidth() * 17)  # about 17 characters of 7 pt text per inch
    fig.supxlabel(textwrap.fill(text, chars), x=0.01, ha="left", fontsize=7, color="0.3")


def _frames_formatter(x: float, _pos: int) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


# --- bars: Figures 3, 4 and 5 -------------------------------------------------------------------


def bar_figure(
    summary: pd.DataFrame,
    *,
    title: str,
    ylabel: str,
    caption: str,
    labels: dict[str, str] | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """Grouped bars: one group per env, one bar per rung (mean ± std over seeds).

    `summary` is `frames.summarize_final` output, in drawing order. A cell with n = 0 is drawn as a
    hatched `n/a` slot; a cell with fewer seeds than the fullest one is annotated `n=K`.
    """
    envs = list(dict.fromkeys(summary["env"]))
    rungs = list(dict.fromkeys(summary["rung"]))
    width = 0.8 / len(rungs)
    fig = Figure(figsize=(max(7.0, 1.2 + len(envs) * max(1.6, 0.35 * len(rungs))), 4.4),
                 layout="constrained")
    ax = fig.subplots()
    full = int(summary["n"].max()) if len(summary) else 0
    drawn = summary.copy()
    drawn["x"] = [
        envs.index(e) + (rungs.index(r) - (len(rungs) - 1) / 2) * width
        for e, r in zip(drawn["env"], drawn["rung"], strict=True)
    ]
    # "missing", not "n/a", in the CSV: pandas.read_csv turns "n/a" into NaN.
    drawn["shown"] = np.where(drawn["n"] > 0, "bar", "missing")
    for rung in rungs:
        cell = drawn[drawn["rung"] == rung]
        have = cell[cell["n"] > 0]
        color = rung_color(rung, rungs)
        ax.bar(have["x"], have["mean"], width * 0.92, color=color, label=rung_label(rung, labels))
        spread = have[have["n"] > 1]
        ax.errorbar(spread["x"], spread["mean"], yerr=spread["std"], fmt="none", ecolor="0.15",
                    elinewidth=1, capsize=2)
        for _, row in have[have["n"] < full].iterrows():
            # Beyond the error bar's far end: above a positive bar, below a negative one.
            sign = 1 if row["mean"] >= 0 else -1
            end = row["mean"] + sign * (0 if np.isnan(row["std"]) else row["std"])
            ax.annotate(f"n={row['n']}", (row["x"], end), xytext=(0, 2 * sign),
                        textcoords="offset points", ha="center",
                        va="bottom" if sign > 0 else "top", fontsize=7, color="0.25")
        for x in cell[cell["n"] == 0]["x"]:
            # A hatched full-height slot: visibly empty, at no height that could read as a score.
            ax.axvspan(x - width * 0.46, x + width * 0.46, facecolor="none", edgecolor=color,
                       hatch="///", linewidth=0, alpha=0.45)
            ax.text(x, 0.5, "n/a", rotation=90, ha="center", va="center", fontsize=8,
                    color=color, fontweight="bold", transform=ax.get_xaxis_transform(),
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.axhline(0, color="0.2", linewidth=0.8)
    ax.set_xticks(range(len(envs)), [env_label(e) for e in envs])
    ax.set_xlim(-0.5, len(envs) - 0.5)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    handles = [Patch(color=rung_color(r, rungs), label=rung_label(r, labels)) for r in rungs]
    wide = sum(len(h.get_label()) for h in handles) > 80  # variants' labels: one per row
    ax.legend(handles=handles, ncol=1 if wide else len(rungs), loc="lower center",
              bbox_to_anchor=(0.5, 1.0),
              frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=11)
    add_caption(fig, caption)
    drawn["label"] = [rung_label(r, labels) for r in drawn["rung"]]
    return fig, drawn.reset_index(drop=True)


# --- learning curves: Figures 6 and 7 -----------------------------------------------------------


def _draw_curves(ax, curves: pd.DataFrame, env: str, rungs) -> list[pd.DataFrame]:
    """One env's panel; returns the rows drawn."""
    drawn, missing = [], []
    for rung in rungs:
        c = curves[(curves["env"] == env) & (curves["rung"] == rung)].sort_values("frames")
        if c.empty:
            missing.append(rung_label(rung))
            continue
        color = rung_color(rung, rungs)
        ax.plot(c["frames"], c["mean"], color=color, linewidth=1.4, label=rung_label(rung),
                marker="o" if len(c) == 1 else None, markersize=3)
        ax.fill_between(c["frames"], c["mean"] - c["std"], c["mean"] + c["std"], color=color,
                        alpha=0.18, linewidth=0)
        drawn.append(c)
    # The note goes in the title, where it can never hide a curve.
    note = "\n(no data: " + ", ".join(missing) + ")" if missing else ""
    ax.set_title(env_label(env) + note, fontsize=10 if not missing else 9)
    ax.xaxis.set_major_formatter(FuncFormatter(_frames_formatter))
    ax.grid(alpha=0.3)
    return drawn


def curve_figure(
    curves: pd.DataFrame,
    envs: list[str],
    rungs: list[str] | tuple[str, ...],
    *,
    title: str,
    ylabel: str,
    caption: str,
) -> tuple[Figure, pd.DataFrame]:
    """One panel per env: a line per rung (mean over seeds) with a ± std band, x in env frames.

    `curves` is `frames.bin_curves` output. A rung without data in an env is named in that panel's
    `no data:` note instead of being drawn. The legend (ladder order) takes the first empty panel
    slot, or sits right of the panels when there is none.
    """
    ncols = min(len(envs), 3)
    nrows = -(-len(envs) // ncols)
    # Variants' labels (`--compare-settings`) are long: wrapped, in a wider figure.
    labels = [textwrap.fill(rung_label(r), 26) for r in rungs]
    extra = 1.6 if any("\n" in label for label in labels) else 0.0
    fig = Figure(figsize=(4.0 * ncols + 1.2 + extra, 3.0 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    drawn = []
    for i, (ax, env) in enumerate(zip(axes.flat, envs, strict=False)):
        drawn += _draw_curves(ax, curves, env, rungs)
        if i + ncols >= len(envs):  # the lowest panel of its column
            ax.set_xlabel("env frames")
        if i % ncols == 0:
            ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=rung_color(r, rungs), linewidth=2, label=label)
               for r, label in zip(rungs, labels, strict=True)]
    spare = axes.flat[len(envs):]
    for ax in spare:
        ax.axis("off")
    if len(spare):
        spare[0].legend(handles=handles, loc="center", frameon=False, fontsize=10)
    else:
        fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=11)
    add_caption(fig, caption)
    out = pd.concat(drawn, ignore_index=True) if drawn else curves.iloc[0:0]
    return fig, out


# --- images: Figures 2 and 8 --------------------------------------------------------------------


def _sha1(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]


def _show(ax, image: np.ndarray | None, title: str = "") -> None:
    if image is None:
        ax.set_facecolor("0.93")
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, color="0.4")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def samples_figure(
    samples: dict[str, list[np.ndarray]], caption: str, row_labels: list[str] | None = None
) -> tuple[Figure, pd.DataFrame]:
    """Figure 2: sample observations, one column per env, one row per sample (`row_labels`).

    `samples` maps env id -> uint8 images (64, 64, 3). The DataFrame names each panel and gives
    its pixels' sha1 and mean, so the CSV pins exactly what was drawn.
    """
    envs = list(samples)
    nrows = max(len(v) for v in samples.values())
    fig = Figure(figsize=(1.9 * len(envs), 1.9 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, len(envs), squeeze=False)
    rows = []
    for j, env in enumerate(envs):
        for i in range(nrows):
            image = samples[env][i] if i < len(samples[env]) else None
            _show(axes[i, j], image, env_label(env) if i == 0 else "")
            if image is not None:
                rows.append({"env": env, "sample": i, "sha1": _sha1(image),
                             "mean_pixel": float(image.mean())})
    for i, label in enumerate(row_labels or []):
        axes[i, 0].set_ylabel(label, fontsize=9)
    add_caption(fig, caption)
    return fig, pd.DataFrame(rows)


def recon_figure(panels: pd.DataFrame, rungs: Sequence[str],
                 caption: str) -> tuple[Figure, pd.DataFrame]:
    """Figure 8: one row per env: the true frame, then each rung's reconstruction of it.

    `panels` has columns env, truth and one per rung (uint8 images or None for a missing run),
    and optional run ids `<rung>_run`. Returns the per-panel MSE against the true frame, the
    number that says which reconstruction is clearer.
    """
    cols = [("truth", "true frame")] + [
        (r, "BLAST (" + rung_label(r) + ")" if r == "ar_prior" else rung_label(r)) for r in rungs]
    n = len(panels)
    fig = Figure(figsize=(1.8 * len(cols), 1.8 * n + 0.7), layout="constrained")
    axes = fig.subplots(n, len(cols), squeeze=False)
    rows = []
    for i, (_, p) in enumerate(panels.iterrows()):
        for j, (key, title) in enumerate(cols):
            image = p[key]
            _show(axes[i, j], image, title if i == 0 else "")
            err = np.nan
            if image is not None and p["truth"] is not None and key != "truth":
                err = float(np.mean((image.astype(float) - p["truth"].astype(float)) ** 2))
            rows.append({"env": p["env"], "panel": key, "run_id": p.get(f"{key}_run", ""),
                         "shown": image is not None, "mse_vs_truth": err})
        axes[i, 0].set_ylabel(env_label(p["env"]), fontsize=9)
    add_caption(fig, caption)
    return fig, pd.DataFrame(rows)
