"""One structured (JSON) access-log line per request, from the pure ASGI middleware."""

from __future__ import annotations

import json
import time
import uuid

import httpx
from harness import Server


def _lines(server: Server, marker: str, want: int, within: float = 3.0) -> list[dict]:
    deadline = time.monotonic() + within
    while True:
        found = []
        for line in server.log_path.read_text(errors="replace").splitlines():
            if marker in line and line.startswith("{"):
                found.append(json.loads(line))
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_one_json_line_per_request(server_a: Server, client: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    for _ in range(5):
        assert client.get(f"/nope-{marker}").status_code == 404
    client.post(f"/nope-{marker}", json={"x": 1})
    records = _lines(server_a, marker, 6)
    assert len(records) == 6
    for record in records:
        assert set(record) == {"ts", "method", "path", "status", "ms", "client", "pid"}
        assert record["path"] == f"/nope-{marker}"
        assert record["client"] == "127.0.0.1"
        assert record["ms"] >= 0
    assert [r["method"] for r in records].count("POST") == 1
    assert {r["status"] for r in records} <= {404, 405}


def test_hot_paths_are_logged_too(server_a: Server, client: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    client.get(f"/api/v1/access/me?{marker}")  # the edge fast path: 401, still logged
    client.get("/ping")
    me_lines = [r for r in _lines(server_a, "/api/v1/access/me", 1) if r["status"] == 401]
    assert me_lines


def test_awkward_paths_stay_valid_json(server_a: Server, client: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    client.get(f'/{marker}/quote"back\\slash%0Anewline%E2%80%A8')
    (record,) = _lines(server_a, marker, 1)
    assert record["path"].startswith(f"/{marker}/quote")
    assert record["status"] == 404
