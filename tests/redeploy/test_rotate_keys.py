"""`playbooks/rotate-keys.yml` rotates the JWT signing key without a 401 and without a
dropped request, and `-e retire=<kid>` ends the old key's tokens only when asked.

Before: a user logs in (token signed by the current key). The rotation (phase 1: the new key
verifies everywhere; phase 2: it signs, the old one verifies) runs while clients loop on
/ping through the socket and the proxy: no request fails, each phase switches slots, the
old token still works on /me, a new login's token carries the new kid, JWKS lists both
(the new, signing key first). Retiring the old key before the longest token life has passed
is refused; with that age waived (-e app_jwt_retire_min_age=0) the old token gets 401 and
the new one still passes.

Needs a provisioned host (make up); about two minutes:
    IRONTRACK_INVENTORY=inventories/local pytest tests/redeploy -k rotate --hosts=docker://irontrack-local
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey
from redeploy_helpers import (
    REPO,
    SOCKET,
    deploy,
    deployed,
    live_state,
    output,
    playbook,
    stop_loops,
)

KEYSET = "/etc/irontrack/keys/jwt-keyset.json"
PASSWORD = "rotate-keys correct horse"


def rotate(host, *extra: str) -> subprocess.CompletedProcess:
    return playbook(host, "rotate-keys.yml", *extra)


def ok(result: subprocess.CompletedProcess) -> bool:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return True


def call(host, method: str, path: str, body: dict | None = None, token: str | None = None):
    """(status, JSON or text) of a request through the app's socket, from the host."""
    args = ["curl", "-s", "--max-time", "10", "-o", "/dev/stdout", "-w", r"\n%{http_code}"]
    args += ["--unix-socket", SOCKET, "-X", method]
    if body is not None:
        args += ["-H", "content-type: application/json", "--data", json.dumps(body)]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    out = host.check_output(" ".join(shlex.quote(a) for a in [*args, f"http://localhost{path}"]))
    text, _, status = out.rpartition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


def login(host) -> str:
    email = f"rotate-{uuid.uuid4().hex[:12]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    assert call(host, "POST", "/api/v1/access/signup", credentials)[0] == 201
    status, answer = call(host, "POST", "/api/v1/access/login", credentials)
    assert status == 200, answer
    return answer["access_token"]


def kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


def jwks(host) -> list[str]:
    status, answer = call(host, "GET", "/.well-known/jwks.json")
    assert status == 200
    return [jwk["kid"] for jwk in answer["keys"]]


def me(host, token: str) -> int:
    return call(host, "GET", "/api/v1/access/me", token=token)[0]


def started(host, slot: str) -> int:
    out = host.check_output(
        f"systemctl show -p ActiveEnterTimestampMonotonic --value irontrack@{slot}.service"
    )
    return int(out)


def states(host) -> list[str]:
    return [k["state"] for k in json.loads(host.file(KEYSET).content_string)["keys"]]


def test_rotation_keeps_live_tokens_and_retirement_ends_them(host, ping_loops):
    before = live_state(host)
    started_before = started(host, before["slot"])
    old_token = login(host)
    old = kid(old_token)
    assert jwks(host)[0] == old
    assert me(host, old_token) == 200

    result = rotate(host)
    assert ok(result)
    after = live_state(host)
    summaries = stop_loops(host, ping_loops)
    print(f"rotation: slot {before['slot']} -> {after['slot']}; clients: {summaries}")
    for name, summary in summaries.items():
        assert summary["failures"] == 0, (name, summary)
    # Two phases, two slot switches: back on the slot it started from, same release.
    # blue -> green -> blue (or the reverse): the same slot again, started anew.
    assert after == before
    assert started(host, after["slot"]) > started_before

    assert me(host, old_token) == 200  # the old key still verifies
    new_token = login(host)
    new = kid(new_token)
    assert new != old
    assert jwks(host) == [new, old]
    assert me(host, new_token) == 200

    # Too early: the old key signed tokens moments ago.
    early = rotate(host, "-e", f"retire={old}")
    assert early.returncode != 0
    assert "refusing to retire" in output(early), output(early)[-3000:]
    assert me(host, old_token) == 200

    assert ok(rotate(host, "-e", f"retire={old}", "-e", "app_jwt_retire_min_age=0"))
    assert jwks(host) == [new]
    assert states(host) == ["signing"]
    assert me(host, old_token) == 401
    assert me(host, new_token) == 200
    # Again: nothing left to retire, nothing changes, still served.
    assert ok(rotate(host, "-e", f"retire={old}", "-e", "app_jwt_retire_min_age=0"))
    assert me(host, new_token) == 200


def test_a_host_without_a_keyset_or_with_a_bad_one_is_refused(host, tmp_path):
    """No per-host key is ever generated: with neither app_jwt_keyset nor app_jwt_keyset_file
    (and no earlier key pair on the host) the deploy stops; a vault keyset without a signing
    key is refused by the service's own loader with a message that shows no key material.
    Either way the host keeps its keyset and its live slot."""
    before = live_state(host)
    keyset = host.file(KEYSET).content_string
    pem = json.loads(keyset)["keys"][0]["private_pem"]

    missing = deploy(host, None, "-e", json.dumps({"app_jwt_keyset_file": None}))
    said = output(missing)
    assert missing.returncode != 0
    assert "no JWT keyset for" in said, said[-3000:]

    vault = {"app_jwt_keyset": [{"state": "verifying", "private_pem": pem}]}
    bad = deploy(host, None, "-e", json.dumps(vault))
    said = output(bad)
    assert bad.returncode != 0
    assert "exactly one key must be 'signing' (found none)" in said, said[-3000:]
    assert "PRIVATE KEY" not in said

    assert live_state(host) == before
    assert host.file(KEYSET).content_string == keyset


def test_an_earlier_releases_key_pair_becomes_the_signing_key(host):
    """A host an earlier release provisioned has its own key pair and no keyset anywhere: the
    next deploy makes that key the controller's keyset's signing key (same kid), so a token
    it signed before the upgrade still works; the pair stays in place, unused."""
    controller = Path(os.environ.get("IRONTRACK_SECRETS_DIR", REPO / ".secrets" / "local"))
    controller_file = controller / "jwt-keyset.json"
    if not controller_file.exists():
        pytest.skip("no controller keyset file (a keyset from vault)")
    saved = controller_file.read_bytes()
    private, public = (
        "/etc/irontrack/keys/jwt_ed25519.pem",
        "/etc/irontrack/keys/jwt_ed25519.pub.pem",
    )
    assert not host.file(private).exists, "the host already has an earlier release's pair"
    token = login(host)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    try:
        host.run_expect(
            [0],
            f"/opt/irontrack/current/bin/irontrack-keygen --private-key {private} "
            f"--public-key {public} && chgrp irontrack {private} && chmod 0640 {private}",
        )
        legacy = OKPKey.import_key(host.file(private).content)
        legacy_kid = OKPKey.import_key(legacy.as_dict(private=False)).thumbprint()
        header = {"alg": "Ed25519", "typ": "at+jwt", "kid": legacy_kid}
        before_upgrade = jwt.encode(header, claims, legacy, algorithms=["Ed25519"])
        assert me(host, before_upgrade) == 401  # not (yet) a key of the keyset
        controller_file.unlink()

        assert deployed(deploy(host, None))
        migrated = json.loads(controller_file.read_text())["keys"]
        assert [k["state"] for k in migrated] == ["signing"]
        assert OKPKey.import_key(migrated[0]["private_pem"]).thumbprint() == legacy_kid
        assert jwks(host) == [legacy_kid]
        assert me(host, before_upgrade) == 200
        assert kid(login(host)) == legacy_kid
    finally:
        # Back to the keyset the host had (and no pair: the other tests expect none).
        host.run(f"rm -f {private} {public}")
        controller_file.write_bytes(saved)
        controller_file.chmod(0o600)
        assert deployed(deploy(host, None))
    assert me(host, token) == 200
