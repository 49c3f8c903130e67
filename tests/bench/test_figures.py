"""Figures of a captured run: ratios, the signup limit, row integrity, targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report.figures import collect, find, signup_limit
from bench.report.wrk import parse


def _rps(run: Path, name: str) -> float:
    return parse((run / "raw" / f"{name}.txt").read_text()).rps


def test_every_scenario_is_loaded_with_its_counters(bench_run: Path) -> None:
    figures = collect(bench_run)
    names = {s["name"] for s in figures["scenarios"]}
    assert names == {p.stem for p in (bench_run / "raw").glob("*.json")}
    for scenario in figures["scenarios"]:
        cpu = scenario["cpu"]
        assert 0 <= cpu["busy_pct"] <= 100
        # Components never account for more CPU than the cores had.
        assert sum(cpu["seconds"].values()) <= cpu["capacity_s"] * 1.05


def test_ratios_come_from_the_same_run(bench_run: Path) -> None:
    figures = collect(bench_run)
    ratios = {r["name"]: r["value"] for r in figures["ratios"]}
    expected = _rps(bench_run, "granian-direct-me") / _rps(bench_run, "granian-direct-ping")
    assert ratios["/me ÷ /ping, Granian (direct)"] == pytest.approx(expected, abs=0.001)
    expected = _rps(bench_run, "granian-proxy-ping") / _rps(bench_run, "granian-direct-ping")
    assert ratios["proxy ÷ direct, /ping (Granian)"] == pytest.approx(expected, abs=0.001)


def test_signup_limit_is_rate_times_hash_threads_capped_by_cores(bench_run: Path) -> None:
    run = json.loads((bench_run / "run.json").read_text())
    limit = signup_limit(run)
    assert limit is not None
    threads = min(int(run["app_workers"]) * run["argon2"]["hash_workers"], run["argon2"]["cpus"])
    assert limit["hash_threads"] == threads
    assert limit["limit_per_s"] == pytest.approx(run["argon2"]["rate_per_s"] * threads, rel=1e-3)
    # More hash threads than cores cannot hash faster.
    run["app_workers"] = 64
    assert signup_limit(run)["hash_threads"] == run["argon2"]["cpus"]


def test_signup_limit_is_the_measured_concurrent_rate_when_there_is_one(bench_run: Path) -> None:
    run_json = bench_run / "run.json"
    run = json.loads(run_json.read_text())
    run["argon2"].update(concurrent_threads=4, concurrent_rate_per_s=5.5)
    limit = signup_limit(run)
    assert limit["limit_per_s"] == 5.5
    assert limit["concurrent_threads"] == 4
    assert "hashing at once" in limit["definition"]
    run_json.write_text(json.dumps(run))
    figures = collect(bench_run)
    ratio = next(r for r in figures["ratios"] if r["name"] == "signup ÷ limit, Granian (direct)")
    assert ratio["denominator"] == 5.5
    target = next(t for t in figures["targets"] if t["name"].startswith("signup ≥"))
    assert target["minimum"] == 0.95


def test_proxy_targets_cover_ping_and_me(bench_run: Path) -> None:
    targets = {t["name"]: t for t in collect(bench_run)["targets"]}
    for route in ("/ping", "/me"):
        target = targets[f"proxy ÷ direct for {route} ≥ 0.65"]
        assert target["minimum"] == 0.65
        assert target["detail"] == f"proxy ÷ direct, {route} (Granian)"


def test_rows_match_201s_in_the_captured_run(bench_run: Path) -> None:
    figures = collect(bench_run)
    signups = [s for s in figures["scenarios"] if s["kind"] == "signup"]
    assert signups
    for scenario in signups:
        integrity = scenario["integrity"]
        assert integrity["lost"] == 0
        assert integrity["extra"] <= integrity["in_flight_at_stop"]
        assert integrity["rows_written"] == integrity["created_201"] + integrity["extra"]
        assert integrity["ok"] is True


def _edit_record(run: Path, name: str, **db: int) -> None:
    path = run / "raw" / f"{name}.json"
    record = json.loads(path.read_text())
    record["db"].update(db)
    path.write_text(json.dumps(record))


def test_a_201_without_its_row_is_lost(bench_run: Path) -> None:
    record = json.loads((bench_run / "raw/granian-direct-signup.json").read_text())
    _edit_record(bench_run, "granian-direct-signup", rows_written=record["db"]["rows_written"] - 1)
    figures = collect(bench_run)
    integrity = find(figures["scenarios"], "granian", "direct", "signup")["integrity"]
    assert integrity["lost"] == 1
    assert integrity["ok"] is False
    target = next(t for t in figures["targets"] if t["name"].startswith("rows written"))
    assert target["met"] is False


def test_rows_beyond_the_requests_in_flight_are_unexplained(bench_run: Path) -> None:
    figures = collect(bench_run)
    integrity = find(figures["scenarios"], "granian", "direct", "signup")["integrity"]
    too_many = integrity["in_flight_at_stop"] + 3
    _edit_record(
        bench_run,
        "granian-direct-signup",
        rows_unanswered=too_many,
        rows_written=integrity["created_201"] + too_many,
    )
    integrity = find(collect(bench_run)["scenarios"], "granian", "direct", "signup")["integrity"]
    assert integrity["lost"] == 0
    assert integrity["unexplained"] == 3
    assert integrity["ok"] is False


def test_targets_follow_their_values(bench_run: Path) -> None:
    for target in collect(bench_run)["targets"]:
        value, minimum = target["value"], target["minimum"]
        if minimum is not None and value is not None and value < minimum:
            assert target["met"] is False
        assert target["met"] in (True, False, None)


def test_a_run_without_run_json_still_reports(bench_run: Path) -> None:
    (bench_run / "run.json").unlink()
    figures = collect(bench_run)
    assert figures["signup_limit"] is None
    target = next(t for t in figures["targets"] if t["name"].startswith("signup ≥"))
    assert target["met"] is None
