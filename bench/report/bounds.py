"""What bounds a missed target, read from the counters measured in the same run (not guessed).

Every scenario carries the host's CPU use while wrk ran and the CPU milliseconds each completed
request cost in each component (app, proxy, PostgreSQL, PgBouncer, Valkey, wrk itself, load from
outside the host). When the cores are saturated, a throughput ratio between two scenarios is
the inverse ratio of their CPU cost per request; that is what these notes compare.
"""

from __future__ import annotations

from typing import Any

from .figures import find

SATURATED_PCT = 90.0


def cpu_line(scenario: dict[str, Any]) -> str:
    """One line: host CPU use and the CPU cost per request, largest components first."""
    cpu = scenario.get("cpu") or {}
    if not cpu:
        return f"{scenario['name']}: no CPU counters"
    per_request = cpu["ms_per_request"]
    total = sum(per_request.values())
    parts = ", ".join(
        f"{name} {value:.3g}"
        for name, value in sorted(per_request.items(), key=lambda kv: -kv[1])
        if value > 0
    )
    return (
        f"{scenario['name']}: host CPU busy {cpu['busy_pct']}% of {cpu['cpus']} cores "
        f"(iowait {cpu['iowait_pct']}%); CPU ms per request {total:.3g} = {parts}"
    )


def _total_ms(scenario: dict[str, Any], *, outside: bool = True) -> float | None:
    """CPU ms per request, with or without the load from outside this host."""
    cpu = scenario.get("cpu") or {}
    if not cpu:
        return None
    return sum(v for k, v in cpu["ms_per_request"].items() if outside or k != "outside")


def _saturated(scenario: dict[str, Any]) -> bool:
    return float((scenario.get("cpu") or {}).get("busy_pct") or 0.0) >= SATURATED_PCT


def _compare(numerator: dict | None, denominator: dict | None, measured: float | None) -> str:
    """Explain a throughput ratio numerator/denominator with the CPU cost per request."""
    if numerator is None or denominator is None:
        return "not measured in this run"
    lines = [cpu_line(numerator), cpu_line(denominator)]
    cost_n, cost_d = _total_ms(numerator), _total_ms(denominator)
    if cost_n and cost_d and _saturated(numerator) and _saturated(denominator):
        predicted = cost_d / cost_n
        lines.append(
            f"both runs saturate the CPU, so throughput follows CPU per request: "
            f"{cost_d:.3g} ms ÷ {cost_n:.3g} ms = {predicted:.2f} (measured "
            f"{'n/a' if measured is None else f'{measured:.2f}'}); the largest costs above "
            f"bound the ratio"
        )
        own_n, own_d = _total_ms(numerator, outside=False), _total_ms(denominator, outside=False)
        if own_n and own_d:
            lines.append(
                f"without the load from outside this host (CPU this host's processes used): "
                f"{own_d:.3g} ms ÷ {own_n:.3g} ms = {own_d / own_n:.2f}"
            )
    else:
        lines.append(
            "the CPU is not saturated in both runs: the bound is latency or concurrency "
            "(see the latency percentiles), not CPU"
        )
    return "; ".join(lines)


def _signup_note(figures: dict[str, Any]) -> str:
    scenario = find(figures["scenarios"], "granian", "direct", "signup")
    limit = figures.get("signup_limit")
    if scenario is None or limit is None:
        return "not measured in this run"
    cpu = scenario.get("cpu") or {}
    integrity = scenario["integrity"]
    seconds = scenario["wrk"]["seconds"]
    ms_per_hash = float(limit["ms_per_hash"] or 0)
    parts = [cpu_line(scenario)]
    if cpu and ms_per_hash:
        used = cpu["seconds"]
        capacity = float(cpu.get("capacity_s") or 0)
        others = sum(v for k, v in used.items() if k != "app")
        left = max(0.0, capacity - others)
        hash_threads_s = float(limit["hash_threads"]) * seconds
        bound = min(left, hash_threads_s) / (ms_per_hash / 1000.0) / seconds
        parts.append(
            f"the cores had {capacity:.1f} CPU s; load from outside this host took "
            f"{used.get('outside', 0):.1f} s and this host's other processes "
            f"{others - used.get('outside', 0):.1f} s, leaving the app at most "
            f"{left:.1f} s (it used {used.get('app', 0):.1f} s for {integrity['rows_written']} "
            f"rows); at {ms_per_hash} ms of CPU per hash that bounds signup at "
            f"{bound:.2f}/s against the limit {limit['limit_per_s']:.2f}/s (measured "
            f"{integrity['created_per_s']}/s)"
        )
    latency_s = float(scenario["wrk"]["latency"]["avg_ms"]) / 1000.0
    if seconds and latency_s == latency_s:  # not NaN
        window = max(0.0, seconds - latency_s) / seconds
        hashed = int(integrity["rows_written"]) / seconds
        parts.append(
            f"wrk counts the 201s that complete inside its {seconds:.1f} s, and the first "
            f"completes only after one signup's latency ({latency_s * 1000:.0f} ms on average), "
            f"so the run can show at most {window:.3f} of the server's rate; the server wrote "
            f"{integrity['rows_written']} rows for the run ({hashed:.2f}/s = "
            f"{hashed / float(limit['limit_per_s']):.3f} of the limit)"
        )
    timeouts = scenario["wrk"]["errors"]["timeout"]
    if timeouts:
        parts.append(
            f"{timeouts} timeouts: with {scenario['connections']} connections and "
            f"{limit['limit_per_s']}/s at best, a request waits ≈ "
            f"{scenario['connections'] / max(limit['limit_per_s'], 0.001):.2f} s on average "
            f"(Little's law) against the {scenario.get('timeout')} timeout"
        )
    return "; ".join(parts)


def _integrity_note(figures: dict[str, Any]) -> str:
    parts = []
    for scenario in figures["scenarios"]:
        integrity = scenario.get("integrity")
        if not integrity:
            continue
        parts.append(
            f"{scenario['name']}: {integrity['rows_written']} rows, {integrity['created_201']} "
            f"201s, {integrity['in_flight_at_stop']} in flight at wrk's stop, "
            f"{integrity.get('lost')} lost, {integrity.get('extra')} extra, statuses "
            f"{integrity['statuses']}"
        )
    return "; ".join(parts) or "no signup run"


# Targets whose note compares two Granian scenarios: name prefix → (scenario, setup) measured,
# (scenario, setup) it is compared with, and the name of the ratio in the figures.
_COMPARED = {
    "/health ÷ /ping": (
        ("health", "direct"),
        ("ping", "direct"),
        "/health ÷ /ping, Granian (direct)",
    ),
    "/me (one token)": (("me", "direct"), ("ping", "direct"), "/me ÷ /ping, Granian (direct)"),
    "/me (distinct tokens)": (
        ("me-distinct", "direct"),
        ("ping", "direct"),
        "/me (distinct tokens) ÷ /ping, Granian (direct)",
    ),
    "proxy ÷ direct for /ping": (
        ("ping", "proxy"),
        ("ping", "direct"),
        "proxy ÷ direct, /ping (Granian)",
    ),
    "proxy ÷ direct for /me": (("me", "proxy"), ("me", "direct"), "proxy ÷ direct, /me (Granian)"),
    "signup(large": (
        ("signup-large", "direct"),
        ("signup", "direct"),
        "signup(large table) ÷ signup(empty), Granian (direct)",
    ),
}


def notes(figures: dict[str, Any]) -> dict[str, str]:
    """A note for every target that was missed (or not measured)."""
    scenarios = figures["scenarios"]
    ratios = {item["name"]: item["value"] for item in figures["ratios"]}
    found: dict[str, str] = {}
    for target in figures["targets"]:
        if target["met"]:
            continue
        name = target["name"]
        compared = next((v for k, v in _COMPARED.items() if name.startswith(k)), None)
        if compared is not None:
            (scenario, setup), (base, base_setup), ratio = compared
            measured = find(scenarios, "granian", setup, scenario)
            if measured is None and scenario == "me-distinct":
                found[name] = "not measured in this run (bench_me_sessions=0?)"
            else:
                found[name] = _compare(
                    measured, find(scenarios, "granian", base_setup, base), ratios.get(ratio)
                )
        elif name.startswith("signup"):
            found[name] = _signup_note(figures)
        elif name.startswith("rows"):
            found[name] = _integrity_note(figures)
    return found
