"""PNG charts: throughput per scenario, and latency percentiles per scenario."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .figures import ENDPOINT_ORDER, SERIES, find, series_label

PERCENTILES = (("p50_ms", "P50"), ("p75_ms", "P75"), ("p90_ms", "P90"), ("p99_ms", "P99"))


def _present(figures: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    scenarios = figures["scenarios"]
    endpoints = [e for e in ENDPOINT_ORDER if any(find(scenarios, s, r, e) for s, r in SERIES)]
    series = [sr for sr in SERIES if any(find(scenarios, *sr, e) for e in endpoints)]
    return endpoints, series


def throughput(figures: dict[str, Any], path: Path) -> Path:
    """Grouped bars: requests/s per endpoint, one bar per server/route (log scale)."""
    endpoints, series = _present(figures)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    width = 0.8 / max(len(series), 1)
    for index, (server, route) in enumerate(series):
        values = []
        for endpoint in endpoints:
            scenario = find(figures["scenarios"], server, route, endpoint)
            values.append(scenario["wrk"]["rps"] if scenario else 0.0)
        xs = [i + index * width for i in range(len(endpoints))]
        bars = ax.bar(xs, values, width, label=series_label(server, route))
        ax.bar_label(
            bars,
            labels=[f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in values],
            fontsize=7,
            padding=2,
        )
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(endpoints))])
    ax.set_xticklabels(endpoints)
    ax.set_yscale("log")
    ax.set_ylabel("requests/s (log scale)")
    run = figures["run"]
    ax.set_title(f"Throughput per scenario — {run.get('host', '?')}, {run.get('date', '?')}")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(figures: dict[str, Any], path: Path) -> Path:
    """One panel per endpoint: P50/P75/P90/P99 (and max) per server/route."""
    endpoints, series = _present(figures)
    fig, axes = plt.subplots(
        1, max(len(endpoints), 1), figsize=(4 * max(len(endpoints), 1), 4.5), squeeze=False
    )
    labels = [label for _, label in PERCENTILES] + ["max"]
    for ax, endpoint in zip(axes[0], endpoints, strict=False):
        missing = []
        for server, route in series:
            scenario = find(figures["scenarios"], server, route, endpoint)
            if scenario is None:
                continue
            lat = scenario["wrk"]["latency"]
            values = [lat[key] for key, _ in PERCENTILES] + [lat["max_ms"]]
            values = [v if v is not None and not math.isnan(v) else float("nan") for v in values]
            if all(math.isnan(v) for v in values):
                missing.append(
                    f"{series_label(server, route)}: every response\nslower than "
                    f"the {scenario.get('timeout')} timeout"
                )
            ax.plot(labels, values, marker="o", label=series_label(server, route))
        if missing:
            ax.text(0.03, 0.97, "\n".join(missing), transform=ax.transAxes, va="top", fontsize=7)
        ax.set_title(endpoint)
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms (log scale)")
        ax.grid(which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    run = figures["run"]
    fig.suptitle(f"Latency percentiles — {run.get('host', '?')}, {run.get('date', '?')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
