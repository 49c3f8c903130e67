"""The contract's server command lines: Granian and Uvicorn on a unix socket, several workers."""

from __future__ import annotations

import pytest
from conftest import me, signup_and_login
from harness import Server, Stack


@pytest.mark.parametrize("kind", ["granian", "uvicorn"])
def test_serves_on_a_unix_socket_with_two_workers(stack: Stack, kind: str) -> None:
    sock = stack.root / f"{kind}.sock"
    server = Server(stack.app_env(), stack.root, f"uds-{kind}", server=kind, workers=2, uds=sock)
    try:
        server.start()
        assert sock.is_socket()
        with server.client() as http:
            assert http.get("/health").status_code == 200
            user = signup_and_login(http, f"uds-{kind}")
            # Whichever worker answers (a new connection each time), the session is valid;
            # after logout, on none of them.
            for _ in range(6):
                with server.client() as fresh:
                    assert me(fresh, user.access).status_code == 200
            out = http.post(
                "/api/v1/access/logout", headers={"Authorization": f"Bearer {user.access}"}
            )
            assert out.status_code == 204
            for _ in range(6):
                with server.client() as fresh:
                    assert me(fresh, user.access).status_code == 401
    finally:
        server.stop()
