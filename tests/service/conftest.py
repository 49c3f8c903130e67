"""Session-wide real components for the service tests (see harness.py)."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from harness import Server, Stack

_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI timeout, a `kill`) tears down like Ctrl-C: no orphaned databases."""

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    stack = Stack.start()
    try:
        stack.prepare_app()
        yield stack
    finally:
        stack.stop()


def _server(stack: Stack, name: str, **env: str) -> Iterator[Server]:
    server = Server(stack.app_env(**env), stack.root, name)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_a(stack: Stack) -> Iterator[Server]:
    yield from _server(stack, "a")


@pytest.fixture(scope="session")
def server_b(stack: Stack) -> Iterator[Server]:
    yield from _server(stack, "b")


@pytest.fixture
def client(server_a: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_a.base_url, timeout=30) as http:
        yield http


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{os.getpid()}-{next(_counter)}@example.com"


PASSWORD = "correct horse battery"


@dataclass
class LoggedIn:
    email: str
    user_id: str
    access: str
    refresh: str


def signup_and_login(http: httpx.Client, tag: str = "user") -> LoggedIn:
    email = unique_email(tag)
    created = http.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    login = http.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    return LoggedIn(email, created.json()["id"], body["access_token"], body["refresh_token"])


def me(http: httpx.Client, access: str, how: str = "quoted") -> httpx.Response:
    if how == "bearer":
        headers = {"Authorization": f"Bearer {access}"}
    elif how == "quoted":
        headers = {"Cookie": f'access_token="{access}"'}
    else:
        headers = {"Cookie": f"access_token={access}"}
    return http.get("/api/v1/access/me", headers=headers)
