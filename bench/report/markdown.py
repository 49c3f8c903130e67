"""The Markdown report, in the layout of the reference report's tables."""

from __future__ import annotations

import math
from typing import Any

from .bounds import cpu_line, notes
from .figures import ENDPOINT_ORDER, SERIES, find, series_label

ENDPOINT_TITLES = {
    "ping": "GET /ping",
    "health": "GET /health",
    "me": "GET /api/v1/access/me (one token)",
    "me-distinct": "GET /api/v1/access/me (distinct users' tokens)",
    "signup": "POST /api/v1/access/signup",
    "signup-large": "POST /api/v1/access/signup (seeded table)",
}


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.2f} ms"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _pct_diff(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{100.0 * (a - b) / b:+.1f}%"


def _errors(scenario: dict[str, Any]) -> str:
    errors = scenario["wrk"]["errors"]
    parts = [f"{errors['timeout']} timeouts"]
    if errors["non_2xx_3xx"]:
        parts.append(f"{errors['non_2xx_3xx']} non-2xx/3xx")
    if errors["socket"]:
        parts.append(
            f"socket connect {errors['connect']}/read {errors['read']}/write {errors['write']}"
        )
    return ", ".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _metric_rows(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    """Rows of a two-column comparison (a against b), as in the report."""
    wa, wb = a["wrk"], b["wrk"]
    rows = [
        ["Requests/sec", _num(wa["rps"]), _num(wb["rps"]), _pct_diff(wa["rps"], wb["rps"])],
    ]
    for label, key in (
        ("Avg Latency", "avg_ms"),
        ("P50 (Median)", "p50_ms"),
        ("P99 Latency", "p99_ms"),
        ("Max Latency", "max_ms"),
    ):
        la, lb = wa["latency"][key], wb["latency"][key]
        rows.append([label, _ms(la), _ms(lb), _pct_diff(la, lb)])
    rows.append(["Errors", _errors(a), _errors(b), ""])
    if "integrity" in a and "integrity" in b:
        ia, ib = a["integrity"], b["integrity"]
        rows.append(
            [
                "201 Created (per s)",
                f"{ia['created_201']} ({_num(ia['created_per_s'])})",
                f"{ib['created_201']} ({_num(ib['created_per_s'])})",
                _pct_diff(ia["created_per_s"], ib["created_per_s"]),
            ]
        )
        rows.append(["Rows written", str(ia["rows_written"]), str(ib["rows_written"]), ""])
    return rows


def _single_rows(a: dict[str, Any]) -> list[list[str]]:
    wa = a["wrk"]
    rows = [["Requests/sec", _num(wa["rps"])]]
    for label, key in (
        ("Avg Latency", "avg_ms"),
        ("P50 (Median)", "p50_ms"),
        ("P99 Latency", "p99_ms"),
        ("Max Latency", "max_ms"),
    ):
        rows.append([label, _ms(wa["latency"][key])])
    rows.append(["Errors", _errors(a)])
    if "integrity" in a:
        ia = a["integrity"]
        rows.append(["201 Created (per s)", f"{ia['created_201']} ({_num(ia['created_per_s'])})"])
        rows.append(["Rows written", str(ia["rows_written"])])
    return rows


def _header(figures: dict[str, Any]) -> list[str]:
    run = figures["run"]
    machine = run.get("machine", {})
    settings = run.get("settings", {})
    limit = figures.get("signup_limit")
    lines = [
        f"# IronTrack benchmark — {run.get('host', '?')}, {run.get('date', '?')}",
        "",
        f"**Command:** `{run.get('command', 'make bench')}`  ",
        f"**Run:** {run.get('run_id', '?')} ({run.get('started', '?')} → "
        f"{run.get('finished', '?')})  ",
        f"**Machine:** {machine.get('cpu', '?')}, {machine.get('cpus', '?')} cores, "
        f"{machine.get('memory_mb', '?')} MiB, {machine.get('os', '?')}, kernel "
        f"{machine.get('kernel', '?')} ({machine.get('virtualization') or 'bare metal'})  ",
        f"**wrk** {run.get('wrk_version', '?')}: {settings.get('threads', '?')} threads, "
        f"{settings.get('connections', '?')} connections (signup "
        f"{settings.get('signup_connections', '?')}), {settings.get('duration', '?')} per "
        f"scenario (signup {settings.get('signup_duration', settings.get('duration', '?'))}), "
        f"timeout {settings.get('timeout', '?')}; the report used 8 threads, 100 "
        f"connections (signup 20), 30s. wrk runs on the host itself (loopback), as in the report. "
        f"Rate limits off during the run.  ",
        f"**Application:** {run.get('app_workers', '?')} workers per server",
    ]
    if limit:
        lines[-1] += (
            f"; Argon2id t={limit['params']['time_cost']} m={limit['params']['memory_cost']} "
            f"p={limit['params']['parallelism']}: {limit['ms_per_hash']} ms per hash on one "
            f"thread = {limit['rate_per_s']:.2f}/s"
            + (
                f" ({limit['wall_ms_per_hash']} ms wall-clock while measuring)"
                if limit.get("wall_ms_per_hash")
                else ""
            )
            + f"; {limit['hash_workers']} hash threads per worker → "
            + (
                f"{limit['concurrent_threads']} hash threads hashing at once (measured) "
                if limit.get("concurrent_threads")
                else f"{limit['hash_threads']} hash threads (capped by {limit['cores']} cores) "
            )
            + f"→ signup limit {limit['limit_per_s']:.2f}/s"
        )
    seed = run.get("seed")
    if seed:
        lines[-1] += (
            f"  \n**Seeded table:** {seed['rows']} users inserted in {seed['seconds']} s "
            f"({seed['table_rows']} rows), deleted after the run"
        )
    errors = run.get("errors") or []
    if errors:
        lines += ["", "**The run failed:** " + "; ".join(errors)]
    return lines


def _ratio_section(figures: dict[str, Any]) -> list[str]:
    rows = [
        [item["name"], "-" if item["value"] is None else f"{item['value']:.3f}", item["note"]]
        for item in figures["ratios"]
    ]
    target_rows = []
    for target in figures["targets"]:
        verdict = {True: "✅ met", False: "❌ missed", None: "- not measured"}[target["met"]]
        value = "" if target["value"] is None else f"{target['value']:.3f}"
        target_rows.append([target["name"], value, verdict, target["detail"]])
    return [
        "## Ratios (one run)",
        "",
        *_table(["Ratio", "Value", "Of"], rows),
        "",
        "## Targets",
        "",
        *_table(["Target", "Value", "Verdict", "Detail"], target_rows),
    ]


def _direct_section(figures: dict[str, Any]) -> list[str]:
    scenarios = figures["scenarios"]
    lines = ["## Direct connection (loopback TCP): Granian vs Uvicorn"]
    for ident in ENDPOINT_ORDER:
        granian = find(scenarios, "granian", "direct", ident)
        uvicorn = find(scenarios, "uvicorn", "direct", ident)
        if granian is None and uvicorn is None:
            continue
        lines += ["", f"### {ENDPOINT_TITLES[ident]}", ""]
        if granian is not None and uvicorn is not None:
            lines += _table(
                ["Metric", "Granian", "Uvicorn", "Difference (Granian vs Uvicorn)"],
                _metric_rows(granian, uvicorn),
            )
        else:
            only = granian or uvicorn
            assert only is not None
            lines += _table(["Metric", series_label(only["server"], "direct")], _single_rows(only))
    return lines


def _proxy_section(figures: dict[str, Any]) -> list[str]:
    scenarios = figures["scenarios"]
    rows: list[list[str]] = []
    for ident in ("ping", "health", "me", "signup"):
        direct = find(scenarios, "granian", "direct", ident)
        proxy = find(scenarios, "granian", "proxy", ident)
        if direct is None or proxy is None:
            continue
        endpoint = direct["endpoint"]
        for label, d, p in (
            ("Requests/sec", direct["wrk"]["rps"], proxy["wrk"]["rps"]),
            ("P50 (Median)", direct["wrk"]["latency"]["p50_ms"], proxy["wrk"]["latency"]["p50_ms"]),
            ("P99 Latency", direct["wrk"]["latency"]["p99_ms"], proxy["wrk"]["latency"]["p99_ms"]),
        ):
            fmt = _num if label == "Requests/sec" else _ms
            rows.append([endpoint, label, fmt(d), fmt(p), _pct_diff(p, d)])
        rows.append([endpoint, "Errors", _errors(direct), _errors(proxy), ""])
        if ident == "signup":
            rows.append(
                [
                    endpoint,
                    "201 Created",
                    str(direct["integrity"]["created_201"]),
                    str(proxy["integrity"]["created_201"]),
                    _pct_diff(
                        proxy["integrity"]["created_201"], direct["integrity"]["created_201"]
                    ),
                ]
            )
    if not rows:
        return []
    return [
        "## Proxy (HTTPS → unix socket) vs direct, Granian",
        "",
        *_table(["Endpoint", "Metric", "Granian (direct)", "Proxy + Granian", "Difference"], rows),
    ]


def _signup_section(figures: dict[str, Any]) -> list[str]:
    rows = []
    limit = figures.get("signup_limit")
    for scenario in figures["scenarios"]:
        integrity = scenario.get("integrity")
        if not integrity:
            continue
        share = None
        if limit and integrity["created_per_s"] is not None and limit["limit_per_s"]:
            share = integrity["created_per_s"] / limit["limit_per_s"]
        verdict = {True: "✅", False: "❌", None: "-"}[integrity.get("ok")]
        rows.append(
            [
                scenario["name"],
                _num(integrity["created_per_s"]),
                _num(share, 3),
                f"{integrity['rows_before']} → {integrity['rows_after']}",
                str(integrity["rows_written"]),
                str(integrity["created_201"]),
                str(integrity["in_flight_at_stop"]),
                str(integrity.get("lost")),
                str(integrity.get("extra")),
                str(scenario["wrk"]["errors"]["timeout"]),
                ", ".join(f"{k}: {v}" for k, v in sorted(integrity["statuses"].items())),
                verdict,
            ]
        )
    if not rows:
        return []
    return [
        "## Signup: its limit and every row",
        "",
        "Rows are counted on the database before and after each run (after the rows stop "
        "growing); `lost` = 201s without a row, `extra` = rows whose request got no 201 (wrk "
        "stops with requests in flight, and the server still completes them: at most the "
        "`in flight` column).",
        "",
        *_table(
            [
                "Scenario",
                "201/s",
                "÷ limit",
                "Table rows",
                "Rows written",
                "201s",
                "In flight at stop",
                "Lost",
                "Extra",
                "Timeouts",
                "Statuses",
                "Rows = 201s",
            ],
            rows,
        ),
    ]


def _cpu_section(figures: dict[str, Any]) -> list[str]:
    lines = [
        "## CPU during each scenario",
        "",
        "Host CPU from /proc/stat; per component the CPU seconds of its systemd unit, wrk's own "
        "rusage, and `outside` = busy CPU no process of this host accounts for (other tenants "
        "of the cores). Milliseconds of CPU per completed request.",
        "",
    ]
    header = ["Scenario", "Busy %", "iowait %", "app", "proxy", "postgresql", "pgbouncer"]
    header += ["valkey", "wrk", "other", "outside", "total"]
    rows = []
    for scenario in figures["scenarios"]:
        cpu = scenario.get("cpu") or {}
        if not cpu:
            continue
        per = cpu["ms_per_request"]
        rows.append(
            [scenario["name"], _num(cpu["busy_pct"], 1), _num(cpu["iowait_pct"], 1)]
            + [
                f"{per.get(k, 0):.3g}"
                for k in ("app", "proxy", "postgresql", "pgbouncer", "valkey", "wrk", "other")
            ]
            + [f"{per.get('outside', 0):.3g}", f"{sum(per.values()):.3g}"]
        )
    return lines + _table(header, rows)


def _notes_section(figures: dict[str, Any]) -> list[str]:
    found = notes(figures)
    if not found:
        return ["## Notes", "", "Every target was met in this run."]
    lines = ["## What bounds each missed target (from this run's counters)", ""]
    for name, text in found.items():
        lines.append(f"- **{name}** — {text}")
    return lines


def _raw_section(figures: dict[str, Any]) -> list[str]:
    lines = ["## Raw wrk output", ""]
    for scenario in figures["scenarios"]:
        lines.append(f"- [{scenario['name']}]({scenario['raw']}): `{scenario['command']}`")
    return lines


def summary_table(figures: dict[str, Any]) -> list[str]:
    """The compact table for the README: one row per scenario."""
    rows = []
    for server, route in SERIES:
        for ident in ENDPOINT_ORDER:
            scenario = find(figures["scenarios"], server, route, ident)
            if scenario is None:
                continue
            wrk = scenario["wrk"]
            lat = wrk["latency"]
            rows.append(
                [
                    series_label(server, route),
                    ENDPOINT_TITLES[ident],
                    str(scenario["connections"]),
                    _num(wrk["rps"]),
                    _ms(lat["avg_ms"]),
                    _ms(lat["p50_ms"]),
                    _ms(lat["p99_ms"]),
                    _ms(lat["max_ms"]),
                    _errors(scenario),
                ]
            )
    header = ["Server", "Scenario", "Conns", "RPS", "Avg", "P50", "P99", "Max", "Errors"]
    return _table(header, rows)


def render(figures: dict[str, Any]) -> str:
    lines = _header(figures)
    lines += ["", "## Summary", "", *summary_table(figures), ""]
    lines += [*_ratio_section(figures), ""]
    lines += [*_direct_section(figures), ""]
    proxy = _proxy_section(figures)
    if proxy:
        lines += [*proxy, ""]
    signup = _signup_section(figures)
    if signup:
        lines += [*signup, ""]
    lines += [*_cpu_section(figures), ""]
    lines += [*_notes_section(figures), ""]
    lines += [*_raw_section(figures), ""]
    return "\n".join(lines)


def ratios_text(figures: dict[str, Any]) -> str:
    """Ratios and targets as plain text (the playbook prints it)."""
    lines = []
    for item in figures["ratios"]:
        value = "n/a" if item["value"] is None else f"{item['value']:.3f}"
        lines.append(f"{item['name']}: {value}")
    for target in figures["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        lines.append(f"target {target['name']}: {verdict} ({target['detail']})")
    return "\n".join(lines)


__all__ = ["cpu_line", "ratios_text", "render", "summary_table"]
