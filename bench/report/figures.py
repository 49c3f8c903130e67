"""Every figure of a bench run: scenarios, the signup limit, row integrity, ratios and targets.

Input: the results directory bench/playbook.yml fills on the controller::

    run.json               the run (host, machine, settings, Argon2id rate, app workers, seed)
    raw/<scenario>.json    one per scenario (its settings, CPU counters, row counts)
    raw/<scenario>.txt     wrk's output for it (first line: the command)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .wrk import WrkResult, parse

# Components the CPU counters are grouped into (systemd unit name prefixes).
COMPONENTS = (
    ("app", ("irontrack",)),
    ("proxy", ("nginx", "angie")),
    ("postgresql", ("postgresql",)),
    ("pgbouncer", ("pgbouncer",)),
    ("valkey", ("valkey", "redis")),
)

# Order of the scenarios in tables.
ENDPOINT_ORDER = ("ping", "health", "me", "me-distinct", "signup", "signup-large")
SERIES = (("granian", "direct"), ("uvicorn", "direct"), ("granian", "proxy"))


def series_label(server: str, route: str) -> str:
    return f"{server.capitalize()} ({route})"


@dataclass(frozen=True)
class Target:
    """A target of the issue: ``value >= minimum`` (``minimum`` None: must be exactly true)."""

    name: str
    value: float | None
    minimum: float | None
    met: bool | None
    detail: str


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    if math.isnan(numerator) or math.isnan(denominator):
        return None
    return numerator / denominator


def component_cpu(units: dict[str, float]) -> dict[str, float]:
    """CPU seconds per component from the per-unit seconds run_wrk.py measured."""
    grouped = {name: 0.0 for name, _ in COMPONENTS}
    grouped["other"] = 0.0
    for unit, seconds in units.items():
        for name, prefixes in COMPONENTS:
            if unit.startswith(prefixes):
                grouped[name] += seconds
                break
        else:
            grouped["other"] += seconds
    return grouped


def load_scenario(directory: Path, record_path: Path) -> dict[str, Any]:
    """A scenario's record with wrk's parsed output and the derived figures."""
    record = json.loads(record_path.read_text(encoding="utf-8"))
    raw_text = (directory / record["raw"]).read_text(encoding="utf-8")
    result: WrkResult = parse(raw_text)
    scenario: dict[str, Any] = {
        key: record.get(key)
        for key in (
            "name",
            "id",
            "server",
            "route",
            "endpoint",
            "kind",
            "table",
            "threads",
            "connections",
            "duration",
            "timeout",
            "command",
            "raw",
            "host",
            "started",
        )
    }
    scenario["wrk"] = result.to_dict()
    scenario["cpu"] = _cpu_figures(record.get("cpu") or {}, result)
    if record.get("kind") == "signup":
        scenario["integrity"] = _integrity(result, record.get("db") or {})
    return scenario


def _cpu_figures(cpu: dict[str, Any], result: WrkResult) -> dict[str, Any]:
    """Host CPU use during the scenario and CPU milliseconds per completed request."""
    if not cpu:
        return {}
    components = component_cpu(cpu.get("units_s", {}))
    components["wrk"] = float(cpu.get("wrk_s", 0.0))
    components["outside"] = float(cpu.get("outside_s", 0.0))
    requests = max(result.requests, 1)
    return {
        "cpus": cpu.get("cpus"),
        "busy_pct": cpu.get("busy_pct"),
        "iowait_pct": cpu.get("iowait_pct"),
        "steal_pct": cpu.get("steal_pct"),
        "capacity_s": cpu.get("capacity_s"),
        "seconds": {k: round(v, 2) for k, v in components.items()},
        "ms_per_request": {k: round(1000.0 * v / requests, 3) for k, v in components.items()},
    }


def _integrity(result: WrkResult, db: dict[str, Any]) -> dict[str, Any]:
    """Rows written by the run against the 201s wrk saw.

    ``lost``: 201s without a row. ``extra``: rows whose request got no 201 — the requests wrk
    left in flight when it stopped (the server still completes them) or answered otherwise.
    ``unexplained``: extra rows beyond the requests left in flight (rows for non-201 answers).
    """
    summary = result.signup or {}
    statuses = {str(k): int(v) for k, v in (summary.get("statuses") or {}).items()}
    created = statuses.get("201", 0)
    sent = int(summary.get("sent", 0))
    responses = int(summary.get("responses", 0))
    in_flight = max(0, sent - responses)
    written = db.get("rows_written")
    unanswered_rows = db.get("rows_unanswered")
    figures: dict[str, Any] = {
        "sent": sent,
        "responses": responses,
        "statuses": statuses,
        "created_201": created,
        "in_flight_at_stop": in_flight,
        "rows_before": db.get("rows_before"),
        "rows_after": db.get("rows_after"),
        "rows_written": written,
        "created_per_s": round(created / result.seconds, 3) if result.seconds else None,
    }
    if written is None or unanswered_rows is None:
        figures.update(lost=None, extra=None, unexplained=None, ok=None)
        return figures
    acknowledged = int(written) - int(unanswered_rows)
    lost = created - acknowledged
    extra = int(unanswered_rows)
    unexplained = max(0, extra - in_flight)
    delta = None
    if db.get("rows_before") is not None and db.get("rows_after") is not None:
        delta = int(db["rows_after"]) - int(db["rows_before"])
    figures.update(
        lost=lost,
        extra=extra,
        unexplained=unexplained,
        table_delta=delta,
        ok=lost == 0 and unexplained == 0,
    )
    return figures


def load_run(directory: Path) -> dict[str, Any]:
    """run.json, or an empty description when the run stopped before writing it."""
    path = directory / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def find(scenarios: list[dict[str, Any]], server: str, route: str, ident: str) -> dict | None:
    for scenario in scenarios:
        if (scenario["server"], scenario["route"], scenario["id"]) == (server, route, ident):
            return scenario
    return None


def signup_limit(run: dict[str, Any]) -> dict[str, Any] | None:
    """Signups/s the host can hash: the Argon2id rate of the hash pools' threads hashing at once
    (measured by argon2_rate.py with the app's workers; issue 15's definition), or, in runs
    that did not measure it, the single-thread rate x min(app workers x hash workers, cores)."""
    argon2 = run.get("argon2")
    if not argon2:
        return None
    cores = int(argon2.get("cpus") or run.get("machine", {}).get("cpus") or 1)
    workers = int(run.get("app_workers") or 0) or cores
    hash_workers = int(argon2.get("hash_workers") or 1)
    threads = min(workers * hash_workers, cores)
    rate = float(argon2["rate_per_s"])
    concurrent = argon2.get("concurrent_rate_per_s")
    limit = {
        "rate_per_s": rate,
        "ms_per_hash": argon2.get("ms_per_hash"),
        "wall_ms_per_hash": argon2.get("wall_ms_per_hash"),
        "app_workers": workers,
        "hash_workers": hash_workers,
        "cores": cores,
        "hash_threads": threads,
        "limit_per_s": round(rate * threads, 3),
        "definition": "single-thread rate x min(pool threads, cores)",
        "params": {k: argon2.get(k) for k in ("time_cost", "memory_cost", "parallelism")},
    }
    if concurrent:
        limit["concurrent_threads"] = argon2.get("concurrent_threads")
        limit["limit_per_s"] = round(float(concurrent), 3)
        limit["definition"] = f"{argon2.get('concurrent_threads')} pool threads hashing at once"
    return limit


def _rps(scenario: dict | None) -> float | None:
    return None if scenario is None else scenario["wrk"]["rps"]


def _created_per_s(scenario: dict | None) -> float | None:
    if scenario is None or "integrity" not in scenario:
        return None
    return scenario["integrity"]["created_per_s"]


def ratios(scenarios: list[dict[str, Any]], limit: dict | None) -> list[dict[str, Any]]:
    """Every ratio of the issue, computed from this one run."""
    found: list[dict[str, Any]] = []

    def add(name: str, numerator: float | None, denominator: float | None, note: str) -> None:
        value = _ratio(numerator, denominator)
        found.append(
            {
                "name": name,
                "value": None if value is None else round(value, 3),
                "numerator": numerator,
                "denominator": denominator,
                "note": note,
            }
        )

    for server, route in SERIES:
        label = series_label(server, route)
        ping = find(scenarios, server, route, "ping")
        add(f"/me ÷ /ping, {label}", _rps(find(scenarios, server, route, "me")), _rps(ping), "RPS")
        distinct = find(scenarios, server, route, "me-distinct")
        if distinct is not None:
            add(
                f"/me (distinct tokens) ÷ /ping, {label}",
                _rps(distinct),
                _rps(ping),
                "RPS; a different seeded user's token on consecutive requests",
            )
        add(
            f"/health ÷ /ping, {label}",
            _rps(find(scenarios, server, route, "health")),
            _rps(ping),
            "RPS",
        )
    for ident in ("ping", "health", "me", "signup"):
        add(
            f"proxy ÷ direct, /{ident} (Granian)",
            _rps(find(scenarios, "granian", "proxy", ident)),
            _rps(find(scenarios, "granian", "direct", ident)),
            "RPS",
        )
    add(
        "Uvicorn ÷ Granian, /ping (direct)",
        _rps(find(scenarios, "uvicorn", "direct", "ping")),
        _rps(find(scenarios, "granian", "direct", "ping")),
        "RPS",
    )
    limit_per_s = None if limit is None else limit["limit_per_s"]
    for server, route in SERIES:
        add(
            f"signup ÷ limit, {series_label(server, route)}",
            _created_per_s(find(scenarios, server, route, "signup")),
            limit_per_s,
            "201/s ÷ the signup limit (Argon2id rate of the pools' threads)",
        )
    for server, route in SERIES:
        add(
            f"signup(large table) ÷ signup(empty), {series_label(server, route)}",
            _created_per_s(find(scenarios, server, route, "signup-large")),
            _created_per_s(find(scenarios, server, route, "signup")),
            "201/s",
        )
    return found


def _ratio_value(found: list[dict[str, Any]], name: str) -> float | None:
    for item in found:
        if item["name"] == name:
            return item["value"]
    return None


def targets(scenarios: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, judged on this run (None: the run did not measure it)."""
    checks: list[Target] = []

    def at_least(name: str, ratio_name: str, minimum: float, extra_ok: bool = True, extra=""):
        value = _ratio_value(found, ratio_name)
        met = None if value is None else (value >= minimum and extra_ok)
        checks.append(Target(name, value, minimum, met, f"{ratio_name}{extra}"))

    at_least("/health ÷ /ping ≥ 0.5", "/health ÷ /ping, Granian (direct)", 0.5)
    at_least("/me (one token) ÷ /ping ≥ 0.9", "/me ÷ /ping, Granian (direct)", 0.9)
    at_least(
        "/me (distinct tokens) ÷ /ping ≥ 0.5",
        "/me (distinct tokens) ÷ /ping, Granian (direct)",
        0.5,
    )
    at_least("proxy ÷ direct for /ping ≥ 0.65", "proxy ÷ direct, /ping (Granian)", 0.65)
    at_least("proxy ÷ direct for /me ≥ 0.65", "proxy ÷ direct, /me (Granian)", 0.65)
    signup = find(scenarios, "granian", "direct", "signup")
    timeouts = None if signup is None else signup["wrk"]["errors"]["timeout"]
    at_least(
        "signup ≥ 0.95 of its limit, 0 timeouts",
        "signup ÷ limit, Granian (direct)",
        0.95,
        extra_ok=timeouts == 0,
        extra=f"; timeouts: {timeouts}",
    )
    at_least(
        "signup(large table) ÷ signup(empty) ≥ 0.95",
        "signup(large table) ÷ signup(empty), Granian (direct)",
        0.95,
    )
    integrity = [s for s in scenarios if "integrity" in s]
    if integrity:
        lost = sum(int(s["integrity"].get("lost") or 0) for s in integrity)
        unexplained = sum(int(s["integrity"].get("unexplained") or 0) for s in integrity)
        unknown = any(s["integrity"].get("ok") is None for s in integrity)
        checks.append(
            Target(
                "rows written = 201 responses",
                None,
                None,
                None if unknown else (lost == 0 and unexplained == 0),
                f"{len(integrity)} signup runs: {lost} lost (201 without a row), "
                f"{unexplained} rows beyond the requests in flight at wrk's stop",
            )
        )
    return [
        {
            "name": c.name,
            "value": c.value,
            "minimum": c.minimum,
            "met": c.met,
            "detail": c.detail,
        }
        for c in checks
    ]


def collect(directory: Path) -> dict[str, Any]:
    """All figures of the run in ``directory``."""
    run = load_run(directory)
    records = sorted((directory / "raw").glob("*.json"))
    scenarios = [load_scenario(directory, path) for path in records]
    scenarios.sort(key=_order)
    limit = signup_limit(run)
    found = ratios(scenarios, limit)
    return {
        "run": run,
        "signup_limit": limit,
        "scenarios": scenarios,
        "ratios": found,
        "targets": targets(scenarios, found),
    }


def _order(scenario: dict[str, Any]) -> tuple[int, int]:
    series = (scenario.get("server"), scenario.get("route"))
    s_index = SERIES.index(series) if series in SERIES else len(SERIES)
    ident = scenario.get("id")
    e_index = ENDPOINT_ORDER.index(ident) if ident in ENDPOINT_ORDER else len(ENDPOINT_ORDER)
    return (s_index, e_index)
