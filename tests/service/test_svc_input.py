"""Bad input of every kind: a clear 4xx with a JSON detail, never a 500, nothing half-written."""

from __future__ import annotations

import socket

import httpx
import pytest
from conftest import PASSWORD, unique_email
from harness import Server, Stack

SIGNUP = "/api/v1/access/signup"
LOGIN = "/api/v1/access/login"
REFRESH = "/api/v1/access/refresh"


def _post_raw(http: httpx.Client, path: str, body: bytes, ctype: str = "application/json"):
    return http.post(path, content=body, headers={"Content-Type": ctype})


@pytest.mark.parametrize("path", [SIGNUP, LOGIN])
@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"email": "a@example.com", "password": "x"',
        b"not json at all",
        b"",
        b"null",
        b"[]",
        b'"a string"',
        b"42",
        b"\xff\xfe\x00",
        b'{"email": "a@example.com", "password": "' + b"\x00" * 3 + b'"',
    ],
)
def test_malformed_json(client: httpx.Client, path: str, body: bytes) -> None:
    answer = _post_raw(client, path, body)
    # 422 for JSON that does not parse or validate; 400 for bytes that are not even UTF-8.
    assert answer.status_code in (400, 422), answer.text
    assert "detail" in answer.json()


@pytest.mark.parametrize("path", [SIGNUP, LOGIN])
@pytest.mark.parametrize(
    "payload",
    [
        {"email": 1, "password": PASSWORD},
        {"email": ["a@example.com"], "password": PASSWORD},
        {"email": "a@example.com", "password": 12345678},
        {"email": "a@example.com", "password": None},
        {"email": "a@example.com", "password": True},
        {"email": "a@example.com"},
        {"password": PASSWORD},
        {},
        {"email": "a@example.com", "password": PASSWORD, "admin": True},
        {"email": {"$ne": ""}, "password": PASSWORD},
    ],
)
def test_wrong_types_and_fields(client: httpx.Client, path: str, payload: object) -> None:
    answer = client.post(path, json=payload)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plainaddress",
        "@example.com",
        "a@",
        "a@@example.com",
        "a b@example.com",
        "a@example..com",
        "<script>@example.com",
        "a@" + "x" * 250 + ".com",
        "x" * 300 + "@example.com",
        "a@example.com\n",
    ],
)
def test_bad_email(client: httpx.Client, email: str) -> None:
    answer = client.post(SIGNUP, json={"email": email, "password": PASSWORD})
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("password", ["", "short", "x" * 129, "é" * 129])
def test_password_bounds(client: httpx.Client, password: str) -> None:
    email = unique_email("pwbound")
    answer = client.post(SIGNUP, json={"email": email, "password": password})
    assert answer.status_code == 422, answer.text
    login = client.post(LOGIN, json={"email": email, "password": password})
    assert login.status_code == 422


def test_longest_allowed_password_works(client: httpx.Client) -> None:
    email = unique_email("pwmax")
    password = "p" * 128
    assert client.post(SIGNUP, json={"email": email, "password": password}).status_code == 201
    assert client.post(LOGIN, json={"email": email, "password": password}).status_code == 200


@pytest.mark.parametrize("path", [SIGNUP, LOGIN, REFRESH])
def test_megabyte_body_is_refused_before_parsing(client: httpx.Client, path: str) -> None:
    """A megabyte password never reaches Argon2: the body ceiling answers 413 first."""
    body = b'{"email": "big@example.com", "password": "' + b"p" * (1 << 20) + b'"}'
    answer = _post_raw(client, path, body)
    assert answer.status_code == 413
    assert answer.json() == {"detail": "request body too large"}


def test_streamed_oversized_body_without_length_is_refused(client: httpx.Client) -> None:
    def chunks():
        yield b'{"email": "big@example.com", "password": "'
        for _ in range(64):
            yield b"p" * 1024
        yield b'"}'

    answer = client.post(SIGNUP, content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_declared_huge_length_is_refused_without_reading(server_a: Server) -> None:
    """Content-Length above the ceiling: 413 at once, before a single body byte is sent."""
    with socket.create_connection(("127.0.0.1", server_a.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/access/signup HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]


def test_form_encoded_body(client: httpx.Client) -> None:
    answer = client.post(SIGNUP, data={"email": "form@example.com", "password": PASSWORD})
    assert answer.status_code == 422


@pytest.mark.parametrize("payload", [{"refresh_token": 5}, {"refresh_token": ""}, [], {"x": 1}])
def test_refresh_bad_body(client: httpx.Client, payload: object) -> None:
    assert client.post(REFRESH, json=payload).status_code == 422


@pytest.mark.parametrize("token", ["nope", "x" * 256])
def test_refresh_unknown_token(client: httpx.Client, token: str) -> None:
    assert client.post(REFRESH, json={"refresh_token": token}).status_code == 401


def test_refresh_without_token(client: httpx.Client) -> None:
    assert client.post(REFRESH).status_code == 401


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert client.get("/api/v1/access/nope").status_code == 404
    assert client.get(SIGNUP).status_code == 405
    assert client.delete("/api/v1/access/me").status_code == 405


def test_rejected_signups_write_nothing(client: httpx.Client, stack: Stack) -> None:
    email = unique_email("nothing")
    client.post(SIGNUP, json={"email": email, "password": "short"})
    client.post(SIGNUP, json={"email": email, "password": PASSWORD, "extra": 1})
    count = stack.postgres.psql(
        f"SELECT count(*) FROM users WHERE lower(email) = lower('{email}')", database="irontrack"
    )
    assert count.strip() == "0"
