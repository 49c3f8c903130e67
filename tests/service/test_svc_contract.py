"""The HTTP contract around the endpoints: HEAD, 405 + Allow, JSON errors, no-store, docs off."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import me, signup_and_login
from harness import Server, Stack

GETS = ["/ping", "/health", "/.well-known/jwks.json", "/api/v1/access/me"]


@pytest.mark.parametrize("path", GETS)
def test_head_works_wherever_get_does(client: httpx.Client, path: str) -> None:
    user = signup_and_login(client, "head")
    headers = {"Authorization": f"Bearer {user.access}"}
    got = client.get(path, headers=headers)
    head = client.head(path, headers=headers)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/ping", {"GET", "HEAD"}),
        ("POST", "/api/v1/access/me", {"GET", "HEAD"}),
        ("DELETE", "/health", {"GET", "HEAD"}),
        ("GET", "/api/v1/access/login", {"POST"}),
        ("PATCH", "/api/v1/access/logout", {"POST"}),
    ],
)
def test_405_is_json_with_allow(
    client: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/json"
    assert "detail" in answer.json()
    assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed


def test_unknown_path_is_json_404(client: httpx.Client) -> None:
    answer = client.get("/no/such/thing")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Not Found"}


def test_token_and_profile_answers_are_never_cached(client: httpx.Client) -> None:
    user = signup_and_login(client, "nostore")
    login = client.post(
        "/api/v1/access/login", json={"email": user.email, "password": "correct horse battery"}
    )
    assert login.headers["cache-control"] == "no-store"
    rotated = client.post("/api/v1/access/refresh", json={"refresh_token": user.refresh})
    assert rotated.headers["cache-control"] == "no-store"
    assert me(client, rotated.json()["access_token"]).headers["cache-control"] == "no-store"
    assert me(client, "nonsense").headers["cache-control"] == "no-store"


@pytest.fixture(scope="module")
def production_server(stack: Stack) -> Iterator[Server]:
    server = Server(stack.app_env(IRONTRACK_DOCS_ENABLED="false"), stack.root, "nodocs")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_docs_and_openapi_are_off_unless_enabled(production_server: Server) -> None:
    with production_server.client() as http:
        for path in ("/openapi.json", "/docs"):
            answer = http.get(path)
            assert answer.status_code == 404
            assert answer.json() == {"detail": "Not Found"}
        assert http.get("/ping").status_code == 200
