"""The edge: certs role (TLS certificate by mode) and angie role (Angie or Debian's nginx).

Every TLS/HTTP probe runs on the host itself with its python3 (the proxy's ports need
not be published). With mkcert (the local host) the certificate is verified against the
local CA the certs role put in the host's trust store; its key stays on the controller.
"""

from __future__ import annotations

import json
import os
import re
import textwrap

import pytest
from conftest import expected

FLAVORS = {
    "angie": {"binary": "/usr/sbin/angie", "conf": "/etc/angie/angie.conf", "group": "angie"},
    "nginx": {"binary": "/usr/sbin/nginx", "conf": "/etc/nginx/nginx.conf", "group": "www-data"},
}


def _certs(name: str) -> str:
    """A certs default with the one-level `{{ certs_* }}` references resolved."""
    value = str(expected("certs", name))
    for ref in re.findall(r"\{\{\s*(certs_\w+)\s*\}\}", value):
        value = re.sub(r"\{\{\s*" + ref + r"\s*\}\}", _certs(ref), value)
    return value


NAMES = [str(n) for n in expected("certs", "certs_names")]
HOSTNAME = next(n for n in NAMES if not re.match(r"^[0-9.]+$|:", n))
CERT_FILE = _certs("certs_cert_file")
KEY_FILE = _certs("certs_key_file")
CERTS_DIR = _certs("certs_dir")
TRUSTED_CA = f"/usr/local/share/ca-certificates/{expected('certs', 'certs_trust_store_name')}.crt"
# The CA that verifies the proxy: the local CA in the host's trust store with mkcert;
# otherwise IRONTRACK_EXPECT_CERTS_CA_FILE (a host path; empty = the host's trust store).
CA_FILE = (
    os.environ.get(
        "IRONTRACK_EXPECT_CERTS_CA_FILE",
        TRUSTED_CA if expected("certs", "certs_provider") == "mkcert" else "",
    )
    or None
)
HTTPS_PORT = int(expected("angie", "angie_https_port"))
HTTP_PORT = int(expected("angie", "angie_http_port"))
MKCERT = expected("certs", "certs_provider") == "mkcert"
mkcert_only = pytest.mark.skipif(
    not MKCERT, reason="certs_provider is not mkcert (IRONTRACK_EXPECT_CERTS_PROVIDER)"
)


def _probe(host, body: str) -> dict:
    """Run a python3 snippet on the host; it prints one JSON document."""
    prelude = textwrap.dedent(
        f"""
        import http.client, json, socket, ssl, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is probed on purpose
        HOST, PORT, CA = {HOSTNAME!r}, {HTTPS_PORT}, {CA_FILE!r}
        def ctx(**kw):
            c = ssl.create_default_context(cafile=CA)
            for k, v in kw.items():
                setattr(c, k, v)
            return c
        def tls(c, name=HOST):
            sock = socket.create_connection((HOST, PORT), timeout=10)
            return c.wrap_socket(sock, server_hostname=name)
        """
    )
    result = host.run("python3 -c %s", prelude + textwrap.dedent(body))
    assert result.rc == 0, f"probe failed on the host:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def flavor(host) -> dict:
    installed = [name for name in FLAVORS if host.package(name).is_installed]
    assert len(installed) == 1, f"expected exactly one of angie/nginx installed, found {installed}"
    return {"name": installed[0], **FLAVORS[installed[0]]}


def test_proxy_enabled_and_running(host, flavor):
    service = host.service(flavor["name"])
    assert service.is_enabled
    assert service.is_running


def test_live_config_validates(host, flavor):
    result = host.run("%s -t", flavor["binary"])
    assert result.rc == 0, result.stderr


def test_open_files_limit_drop_in(host, flavor):
    drop_in = host.file(f"/etc/systemd/system/{flavor['name']}.service.d/irontrack-limits.conf")
    assert drop_in.exists
    assert re.search(r"^LimitNOFILE=\d+$", drop_in.content_string, re.M)


def test_listens_on_http_and_https(host):
    assert host.socket(f"tcp://0.0.0.0:{HTTPS_PORT}").is_listening
    assert host.socket(f"tcp://0.0.0.0:{HTTP_PORT}").is_listening


def test_private_key_is_root_only(host):
    if expected("certs", "certs_provider") == "acme" and not host.file(KEY_FILE).exists:
        pytest.skip("Angie's own ACME client keeps the key (no certs_key_file)")
    key = host.file(KEY_FILE)
    owner = (expected("certs", "certs_key_owner"), expected("certs", "certs_key_group"))
    assert (key.user, key.group) == owner
    assert key.mode == int(str(expected("certs", "certs_key_mode")), 8)


def test_no_ca_private_key_on_the_host(host):
    """The mkcert CA lives on the controller: no CA key, no CAROOT on the host (earlier
    versions kept one in certs_dir/ca; the role removes it), and the key the proxy holds
    belongs to a leaf certificate, not to a CA."""
    assert not host.file(f"{CERTS_DIR}/ca").exists
    found = host.run("find / -xdev -name 'rootCA-key.pem' -print -quit 2>/dev/null").stdout
    assert found.strip() == "", f"a CA private key is on the host: {found}"
    if host.file(CERT_FILE).exists:
        result = host.run("openssl x509 -in %s -noout -ext basicConstraints", CERT_FILE)
        assert "CA:TRUE" not in result.stdout, result.stdout


def test_localhost_names_resolve_on_the_host(host):
    for name in (n for n in NAMES if n.endswith(".localhost")):
        addresses = host.run("getent ahostsv4 %s", name).stdout.split()
        assert "127.0.0.1" in addresses, f"{name} does not resolve on the host"


@mkcert_only
def test_ca_is_in_the_trust_store(host):
    """Only where the inventory asks for it (certs_trust_store_install, the local host)."""
    if not expected("certs", "certs_trust_store_install"):
        assert not host.file(TRUSTED_CA).exists
        return
    assert host.file(TRUSTED_CA).exists
    assert host.file(f"/etc/ssl/certs/{expected('certs', 'certs_trust_store_name')}.pem").is_symlink
    result = _probe(
        host,
        """
        s = tls(ssl.create_default_context())  # the system trust store, not CA
        print(json.dumps({"version": s.version()}))
        """,
    )
    assert result["version"] in ("TLSv1.2", "TLSv1.3")


@mkcert_only
def test_https_serves_the_mkcert_certificate(host):
    result = _probe(
        host,
        f"""
        s = tls(ctx())
        cert = s.getpeercert()
        served = s.getpeercert(binary_form=True)
        on_disk = ssl.PEM_cert_to_DER_cert(open({CERT_FILE!r}).read())
        print(json.dumps({{
            "same": served == on_disk,
            "issuer": [v for rdn in cert["issuer"] for k, v in rdn if k == "organizationName"],
            "sans": sorted(v for _, v in cert["subjectAltName"]),
        }}))
        """,
    )
    assert result["same"], "443 serves a certificate other than the one the certs role issued"
    assert result["issuer"] == ["mkcert development CA"]
    assert {n for n in NAMES if ":" not in n} <= set(result["sans"]), result["sans"]


def test_tls_12_and_13_only(host):
    result = _probe(
        host,
        """
        out = {}
        for label, version in (("1.2", ssl.TLSVersion.TLSv1_2), ("1.3", ssl.TLSVersion.TLSv1_3)):
            out[label] = tls(ctx(minimum_version=version, maximum_version=version)).version()
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(CA)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            out["1.1"] = tls(old).version()
        except ssl.SSLError as exc:
            out["1.1"] = "refused: " + exc.reason
        print(json.dumps(out))
        """,
    )
    assert result["1.2"] == "TLSv1.2"
    assert result["1.3"] == "TLSv1.3"
    # The server must be the one refusing (a protocol-version alert), not the client.
    assert result["1.1"] == "refused: TLSV1_ALERT_PROTOCOL_VERSION", result


def test_http2_is_negotiated(host):
    result = _probe(
        host,
        """
        c = ctx()
        c.set_alpn_protocols(["h2", "http/1.1"])
        print(json.dumps({"alpn": tls(c).selected_alpn_protocol()}))
        """,
    )
    assert result["alpn"] == "h2"


def test_tls_session_resumption(host):
    result = _probe(
        host,
        """
        c = ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
        first = tls(c)
        session = first.session
        first.close()
        second = c.wrap_socket(socket.create_connection((HOST, PORT), timeout=10),
                               server_hostname=HOST, session=session)
        print(json.dumps({"reused": second.session_reused}))
        """,
    )
    assert result["reused"] is True


def test_ping_through_https(host):
    result = _probe(
        host,
        """
        conn = http.client.HTTPSConnection(HOST, PORT, context=ctx(), timeout=10)
        conn.request("GET", "/ping")
        r = conn.getresponse()
        body = r.read().decode()
        print(json.dumps({"status": r.status, "body": body, "headers": dict(r.getheaders())}))
        """,
    )
    assert result["status"] == 200, result
    assert json.loads(result["body"]) == {"ping": "pong"}
    headers = {k.lower(): v for k, v in result["headers"].items()}
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == expected("angie", "angie_referrer_policy")
    assert headers["content-security-policy"] == expected("angie", "angie_content_security_policy")
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    assert headers["server"] in ("nginx", "Angie"), "server_tokens must hide the version"


def test_plain_http_redirects_to_https(host):
    result = _probe(
        host,
        f"""
        conn = http.client.HTTPConnection(HOST, {HTTP_PORT}, timeout=10)
        conn.request("GET", "/ping?x=1")
        r = conn.getresponse()
        print(json.dumps({{"status": r.status, "location": r.getheader("Location")}}))
        """,
    )
    suffix = "" if HTTPS_PORT == 443 else f":{HTTPS_PORT}"
    assert result == {"status": 301, "location": f"https://{HOSTNAME}{suffix}/ping?x=1"}


def test_request_body_limit(host):
    result = _probe(
        host,
        """
        conn = http.client.HTTPSConnection(HOST, PORT, context=ctx(), timeout=10)
        conn.request("POST", "/api/v1/access/signup", body=b"x" * (1024 * 1024 + 1),
                     headers={"Content-Type": "application/json"})
        print(json.dumps({"status": conn.getresponse().status}))
        """,
    )
    assert result["status"] == 413


def test_broken_candidate_is_rejected_by_the_validator(host, flavor):
    """The role validates a candidate with `<binary> -t -c <candidate>`: a copy of the live
    configuration anywhere on disk must validate, and the same copy with an unknown
    directive must fail with the validator's message, leaving the live proxy serving."""
    candidate = host.run("mktemp /tmp/edge-candidate.XXXXXX.conf").stdout.strip()
    try:
        assert host.run("cp %s %s", flavor["conf"], candidate).rc == 0
        ok = host.run("%s -t -q -c %s", flavor["binary"], candidate)
        assert ok.rc == 0, f"the live configuration is not self-contained: {ok.stderr}"
        host.run("sed -i 's/^http {/http {\\n    irontrack_broken_directive on;/' %s", candidate)
        broken = host.run("%s -t -q -c %s", flavor["binary"], candidate)
        assert broken.rc != 0
        assert 'unknown directive "irontrack_broken_directive"' in broken.stderr
    finally:
        host.run("rm -f %s", candidate)
    assert host.run("%s -t -q", flavor["binary"]).rc == 0
    test_ping_through_https(host)


def test_rate_limits_on_by_default(host, flavor):
    """angie_rate_limits_enabled (default true): a burst above rate+burst gets 429."""
    assert expected("angie", "angie_rate_limits_enabled") is True
    config = host.file(flavor["conf"]).content_string
    assert re.search(r"limit_req zone=api_limit burst=\d+ nodelay;", config)
    assert re.search(r"limit_conn addr_limit \d+;", config)
    burst = int(expected("angie", "angie_limit_req_burst"))
    result = _probe(
        host,
        f"""
        import time
        conn = http.client.HTTPSConnection(HOST, PORT, context=ctx(), timeout=10)
        statuses = []
        for _ in range({burst} * 3):
            conn.request("GET", "/ping")
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
        time.sleep(3)  # let the bucket drain for whatever runs next
        print(json.dumps(statuses))
        """,
    )
    assert result[0] == 200
    assert 429 in result, f"no request was limited in a burst of {len(result)}: {result}"
    assert set(result) <= {200, 429}


def _answers(host, requests: list[tuple[str, str, int]]) -> list[dict]:
    """Status, content type, Allow and body of each (method, path, body bytes) request."""
    return _probe(
        host,
        f"""
        out = []
        for method, path, size in {requests!r}:
            conn = http.client.HTTPSConnection(HOST, PORT, context=ctx(), timeout=10)
            conn.request(method, path, body=b"x" * size if size else None,
                         headers={{"Content-Type": "application/json"}})
            r = conn.getresponse()
            out.append({{"status": r.status, "type": r.getheader("Content-Type", ""),
                        "allow": r.getheader("Allow"), "body": r.read().decode("latin-1")}})
            conn.close()
        print(json.dumps(out))
        """,
    )


def test_errors_through_the_proxy_are_json(host):
    """The proxy's own errors (413) and the app's (405 with Allow, 404) are {"detail": ...}."""
    answers = _answers(
        host,
        [
            ("PUT", "/ping", 0),
            ("DELETE", "/api/v1/access/me", 0),
            ("POST", "/api/v1/access/signup", 1024 * 1024 + 1),
            ("GET", "/no/such/path", 0),
        ],
    )
    assert [a["status"] for a in answers] == [405, 405, 413, 404], answers
    for answer in answers:
        assert answer["type"].startswith("application/json"), answer
        assert "detail" in json.loads(answer["body"]), answer
    assert "GET" in answers[0]["allow"]
    assert "GET" in answers[1]["allow"]


def test_strict_rate_class_on_login_answers_json_429(host):
    """Signup/login have their own, stricter zone: a burst gets the proxy's JSON 429 while
    /ping (generous zone) still answers."""
    burst = int(expected("angie", "angie_auth_limit_req_burst"))
    answers = _answers(host, [("POST", "/api/v1/access/login", 2)] * (burst + 6))
    statuses = [a["status"] for a in answers]
    assert 429 in statuses, statuses
    assert set(statuses) <= {422, 429}, statuses
    limited = next(a for a in answers if a["status"] == 429)
    assert limited["type"].startswith("application/json")
    assert json.loads(limited["body"]) == {"detail": "too many requests"}
    assert [a["status"] for a in _answers(host, [("GET", "/ping", 0)])] == [200]
    host.run("sleep 6")  # let the strict bucket drain for whatever runs next
