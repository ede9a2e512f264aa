#!/usr/bin/env python3
"""Plots the training loss of an idiff (or improved-diffusion) run from its progress.csv.

    plot_progress.py LOG_DIR/progress.csv OUT.png

The loss and its four timestep quarters (loss_q0 .. loss_q3, the reference's
log_loss_dict) against the step, on a log scale. Needs matplotlib (build.sh setup installs
it into .venv)."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_progress.py progress.csv OUT.png")
    src, out = sys.argv[1], sys.argv[2]
    try:
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"plot_progress.py: {src}: {e.strerror}")
    if not rows or "step" not in rows[0] or "loss" not in rows[0]:
        sys.exit(f"plot_progress.py: {src}: expected a progress.csv with step and loss columns")

    def column(name):
        pts = [(float(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for q, shade in zip(range(4), ("#c6dbef", "#9ecae1", "#6baed6", "#4292c6")):
        name = f"loss_q{q}"
        if name in rows[0]:
            ax.plot(*column(name), color=shade, linewidth=1, label=f"t in quarter {q}")
    ax.plot(*column("loss"), color="#08306b", linewidth=2, label="loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss (progress.csv)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"loss curve of {len(rows)} log points: {out}")


if __name__ == "__main__":
    main()
