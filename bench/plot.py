#!/usr/bin/python3
"""bench/plot: PNG and SVG figures of bench results, so that people can look instead of reading tables.

  plot.py compare RESULTS [OUT_PREFIX]   conns/s and p99 per system and concurrency, from
                                         bench/compare-latest.json (compare.py writes it) or
                                         from the table of a bench/RESULTS.md
  plot.py scale RESULTS [OUT_PREFIX]     superd's RSS and fd count over the run of scale.py,
                                         from its JSON (the "series" samples when present,
                                         else the before/after figures of each phase)
Writes OUT_PREFIX.png and OUT_PREFIX.svg (default: the input's name without its extension).
Needs Debian's matplotlib (python3-matplotlib), hence /usr/bin/python3: a python3 earlier on
PATH (pyenv) may not see Debian's modules."""

import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def compare_rows(path):
    """[{system, c, conns_per_s, p50_ms, p99_ms, failed}] from compare-latest.json or RESULTS.md."""
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)["rows"]
    rows = []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 9 and re.fullmatch(r"\d+", cells[1] or "x"):
                rows.append({"system": cells[0], "c": int(cells[1]), "conns_per_s": float(cells[2]),
                             "p50_ms": float(cells[3]), "p99_ms": float(cells[4]), "failed": int(cells[8])})
    if not rows:
        sys.exit(f"plot: no result table in {path}")
    return rows


def plot_compare(path, prefix):
    rows = compare_rows(path)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    concs = sorted({r["c"] for r in rows})
    by = {(r["system"], r["c"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(systems)
    for ax, key, title in ((axes[0], "conns_per_s", "connections per second (higher is better)"),
                           (axes[1], "p99_ms", "p99 latency, ms (lower is better)")):
        for i, s in enumerate(systems):
            xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(concs))]
            ys = [by[(s, c)][key] if (s, c) in by else float("nan") for c in concs]
            ax.bar(xs, ys, width, label=s)
        ax.set_xticks(range(len(concs)), [f"c={c}" for c in concs])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"bench/compare: {os.path.basename(path)} (medians over interleaved rounds)", fontsize=11)
    return save(fig, prefix)


def plot_scale(path, prefix):
    with open(path) as f:
        rep = json.load(f)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series = rep.get("series")
    if series:
        # Samples taken by scale.py while it ran, with the phase each one belongs to.
        t = [p["t"] for p in series]
        axes[0].plot(t, [p["rss_kb"] / 1024 for p in series])
        axes[1].plot(t, [p["fds"] for p in series])
        phases = {}
        for p in series:
            phases.setdefault(p["phase"], p["t"])
        for ax in axes:
            for name, t0 in phases.items():
                ax.axvline(t0, color="grey", alpha=0.4, lw=0.8)
                ax.text(t0, ax.get_ylim()[1], f" {name}", rotation=90, va="top", fontsize=7, color="grey")
            ax.set_xlabel("seconds")
    else:
        # A report without samples: the figure of each phase, in the order they were taken.
        soak = rep.get("soak", {})
        points = [("idle", rep.get("rss_idle_kb"), rep.get("fds_idle")),
                  (f"{rep.get('live_instances', '?')} live", rep.get("rss_live_kb"), rep.get("fds_live")),
                  ("soak before", soak.get("rss_before_kb"), soak.get("fds_before")),
                  (f"after {soak.get('connections', '?')} conns", soak.get("rss_after_kb"), soak.get("fds_after"))]
        points = [p for p in points if p[1] is not None]
        labels = [p[0] for p in points]
        axes[0].plot(labels, [p[1] / 1024 for p in points], marker="o")
        axes[1].plot(labels, [p[2] for p in points], marker="o")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=8)
            ax.set_xlabel("phase of the run")
    axes[0].set_title("superd RSS, MiB", fontsize=10)
    axes[1].set_title("superd open fds", fontsize=10)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0 if ax is axes[0] else None)
    fig.suptitle(f"bench/scale: {os.path.basename(path)}", fontsize=11)
    return save(fig, prefix)


def save(fig, prefix):
    fig.tight_layout()
    out = []
    for ext in ("png", "svg"):
        p = f"{prefix}.{ext}"
        fig.savefig(p, dpi=110, metadata={"Date": None} if ext == "svg" else None)
        out.append(p)
    plt.close(fig)
    print("plot: wrote " + " ".join(out))
    return out


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("compare", "scale"):
        sys.exit(__doc__)
    kind, path = sys.argv[1], sys.argv[2]
    prefix = sys.argv[3] if len(sys.argv) == 4 else os.path.splitext(path)[0]
    (plot_compare if kind == "compare" else plot_scale)(path, prefix)


if __name__ == "__main__":
    main()
