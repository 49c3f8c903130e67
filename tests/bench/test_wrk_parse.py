"""wrk's text → numbers, on real output only."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from benchfixtures import BENCH_RUNS, REPORT_RUNS

from bench.report.wrk import WrkParseError, parse

ALL_RAW = REPORT_RUNS + [p for run in BENCH_RUNS for p in sorted((run / "raw").glob("*.txt"))]


def _line_value(text: str, label: str) -> float:
    match = re.search(rf"^{re.escape(label)}:\s+([0-9.]+)", text, re.MULTILINE)
    assert match, label
    return float(match.group(1))


@pytest.mark.parametrize("path", ALL_RAW, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_parses_every_real_output_consistently(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    result = parse(text)
    assert result.rps == _line_value(text, "Requests/sec")
    # wrk's Requests/sec is requests ÷ run time; the parsed totals must agree with it.
    assert result.requests / result.seconds == pytest.approx(result.rps, rel=0.01)
    assert result.url.startswith(("http://", "https://"))
    assert 1 <= result.threads <= result.connections
    lat = result.latency
    if not math.isnan(lat.p50_ms):
        assert 0 < lat.p50_ms <= lat.p75_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms * 1.001
        assert lat.avg_ms <= lat.max_ms


def test_reads_units_of_the_report_run() -> None:
    # The reference report's Granian signup run: seconds and milliseconds mixed, a timeout count.
    text = next(p for p in REPORT_RUNS if "timeout 10" in p.read_text()).read_text()
    result = parse(text)
    assert result.latency.avg_ms == pytest.approx(1070.0)
    assert result.latency.stdev_ms == pytest.approx(455.44)
    assert result.latency.p50_ms == pytest.approx(836.44)
    assert result.latency.p99_ms == pytest.approx(1970.0)
    assert result.errors.timeout == 10
    assert result.errors.total == 10
    assert result.read_bytes == pytest.approx(193.52 * 1024)


def test_reads_non_2xx_and_socket_errors() -> None:
    texts = [p.read_text() for p in ALL_RAW]
    with_non2xx = [t for t in texts if "Non-2xx or 3xx responses" in t]
    assert with_non2xx, "the fixtures hold a run with non-2xx answers"
    for text in with_non2xx:
        count = int(re.search(r"Non-2xx or 3xx responses: (\d+)", text).group(1))
        assert parse(text).errors.non_2xx_3xx == count


def test_no_latency_recorded_is_nan_not_zero() -> None:
    # wrk prints 0.00us and "-nan%" when every response was slower than --timeout.
    texts = [p.read_text() for p in ALL_RAW if "-nan%" in p.read_text()]
    assert texts, "the fixtures hold a run where every response timed out"
    for text in texts:
        lat = parse(text).latency
        assert all(math.isnan(v) for v in (lat.avg_ms, lat.p50_ms, lat.p99_ms, lat.max_ms))


def test_signup_summary_line() -> None:
    runs = [p for p in ALL_RAW if "IRONTRACK-SIGNUP" in p.read_text()]
    assert runs
    for path in runs:
        summary = parse(path.read_text()).signup
        assert summary is not None
        assert summary["sent"] >= summary["responses"]
        assert sum(summary["statuses"].values()) == summary["responses"]
        # Every email sent without a 201 is listed, each once.
        created = summary["statuses"].get("201", 0)
        assert len(summary["unanswered"]) == summary["sent"] - created
        assert len(set(summary["unanswered"])) == len(summary["unanswered"])


def test_report_output_without_latency_flag_is_refused() -> None:
    text = REPORT_RUNS[0].read_text()
    without = re.sub(r"Latency Distribution.*?(?=^\s*\d+ requests in)", "", text, flags=re.S | re.M)
    with pytest.raises(WrkParseError, match="--latency"):
        parse(without)


def test_truncated_output_is_refused() -> None:
    text = REPORT_RUNS[0].read_text()
    with pytest.raises(WrkParseError, match="Requests/sec"):
        parse(text.split("Requests/sec")[0])
