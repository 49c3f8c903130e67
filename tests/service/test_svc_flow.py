"""The whole signup → login → me → refresh → logout flow against real components."""

from __future__ import annotations

import uuid

import httpx
from conftest import PASSWORD, me, signup_and_login, unique_email


def test_full_flow(client: httpx.Client) -> None:
    email = unique_email("flow")
    created = client.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201
    body = created.json()
    assert body["email"] == email
    assert uuid.UUID(body["id"]).version == 7

    login = client.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    tokens = login.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 1800

    for how in ("quoted", "plain", "bearer"):
        profile = me(client, tokens["access_token"], how)
        assert profile.status_code == 200, (how, profile.text)
        assert profile.json()["id"] == body["id"]
        assert profile.json()["email"] == email

    rotated = client.post("/api/v1/access/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert me(client, tokens["access_token"]).status_code == 401  # the rotated pair ended
    assert me(client, new["access_token"]).status_code == 200

    out = client.post(
        "/api/v1/access/logout", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert out.status_code == 204
    assert me(client, new["access_token"]).status_code == 401
    again = client.post("/api/v1/access/refresh", json={"refresh_token": new["refresh_token"]})
    assert again.status_code == 401


def test_login_sets_hardened_cookies(client: httpx.Client) -> None:
    email = unique_email("cookie")
    client.post("/api/v1/access/signup", json={"email": email, "password": PASSWORD})
    login = client.post("/api/v1/access/login", json={"email": email, "password": PASSWORD})
    cookies = {c.split("=", 1)[0]: c for c in login.headers.get_list("set-cookie")}
    access = cookies["access_token"].lower()
    for attribute in ("httponly", "secure", "samesite=lax", "path=/", "max-age=1800"):
        assert attribute in access
    refresh = cookies["refresh_token"].lower()
    for attribute in ("httponly", "secure", "path=/api/v1/access"):
        assert attribute in refresh


def test_refresh_from_cookie_and_logout_by_refresh_cookie(client: httpx.Client) -> None:
    user = signup_and_login(client, "rcookie")
    rotated = client.post(
        "/api/v1/access/refresh", headers={"Cookie": f'refresh_token="{user.refresh}"'}
    )
    assert rotated.status_code == 200
    new = rotated.json()
    out = client.post(
        "/api/v1/access/logout", headers={"Cookie": f"refresh_token={new['refresh_token']}"}
    )
    assert out.status_code == 204
    assert me(client, new["access_token"]).status_code == 401


def test_reuse_of_rotated_refresh_token_revokes_the_session(client: httpx.Client) -> None:
    user = signup_and_login(client, "reuse")
    first = client.post("/api/v1/access/refresh", json={"refresh_token": user.refresh})
    assert first.status_code == 200
    successor = first.json()
    assert me(client, successor["access_token"]).status_code == 200

    replay = client.post("/api/v1/access/refresh", json={"refresh_token": user.refresh})
    assert replay.status_code == 401
    assert "reuse" in replay.json()["detail"]
    # The thief's replay ended the legitimate successor too.
    assert me(client, successor["access_token"]).status_code == 401
    follow = client.post(
        "/api/v1/access/refresh", json={"refresh_token": successor["refresh_token"]}
    )
    assert follow.status_code == 401


def test_sessions_are_independent(client: httpx.Client) -> None:
    user = signup_and_login(client, "multi")
    second = client.post("/api/v1/access/login", json={"email": user.email, "password": PASSWORD})
    other = second.json()["access_token"]
    assert (
        client.post(
            "/api/v1/access/logout", headers={"Authorization": f"Bearer {user.access}"}
        ).status_code
        == 204
    )
    assert me(client, user.access).status_code == 401
    assert me(client, other).status_code == 200


def test_logout_without_credentials_is_401(client: httpx.Client) -> None:
    assert client.post("/api/v1/access/logout").status_code == 401
    bogus = client.post("/api/v1/access/logout", json={"refresh_token": "nope"})
    assert bogus.status_code == 401


def test_wrong_password_and_unknown_email_answer_alike(client: httpx.Client) -> None:
    user = signup_and_login(client, "wrong")
    wrong = client.post(
        "/api/v1/access/login", json={"email": user.email, "password": "not the password"}
    )
    unknown = client.post(
        "/api/v1/access/login", json={"email": unique_email("ghost"), "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "set-cookie" not in wrong.headers


def test_login_is_case_insensitive_on_email(client: httpx.Client) -> None:
    user = signup_and_login(client, "CaseUser")
    login = client.post(
        "/api/v1/access/login", json={"email": user.email.upper(), "password": PASSWORD}
    )
    assert login.status_code == 200
