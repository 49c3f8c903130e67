"""The OpenAPI document describes what the endpoints really do."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def spec(server_a) -> dict:
    with httpx.Client(base_url=server_a.base_url) as http:
        answer = http.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


EXPECTED = {
    ("/ping", "get"): {"200"},
    ("/health", "get"): {"200", "503"},
    ("/api/v1/access/signup", "post"): {"201", "409", "413", "422"},
    ("/api/v1/access/login", "post"): {"200", "401", "422", "429", "503"},
    ("/api/v1/access/me", "get"): {"200", "401"},
    ("/api/v1/access/refresh", "post"): {"200", "401", "422"},
    ("/api/v1/access/logout", "post"): {"204", "401", "422"},
    ("/.well-known/jwks.json", "get"): {"200"},
}


def test_every_endpoint_and_status_is_documented(spec: dict) -> None:
    documented = {
        (path, method): set(op["responses"])
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    for key, codes in EXPECTED.items():
        assert key in documented, key
        assert codes <= documented[key], (key, documented[key])
    assert set(documented) == set(EXPECTED)


def test_documented_bodies_match_reality(spec: dict, client: httpx.Client) -> None:
    schemas = spec["components"]["schemas"]
    credentials = schemas["Credentials"]
    assert credentials["properties"]["password"]["maxLength"] == 128
    assert credentials["properties"]["password"]["minLength"] == 8
    assert credentials["additionalProperties"] is False
    assert set(credentials["required"]) == {"email", "password"}
    assert set(schemas["TokenOut"]["properties"]) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }
    # The documented 201 body is what signup returns.
    ref = spec["paths"]["/api/v1/access/signup"]["post"]["responses"]["201"]
    schema_name = ref["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schemas[schema_name]["properties"]) == {"id", "email"}
    pong = client.get("/ping").json()
    assert set(pong) == set(schemas["Ping"]["properties"])
    health = client.get("/health").json()
    assert set(health) == set(schemas["HealthOut"]["properties"])


def test_security_schemes_document_cookie_and_bearer(spec: dict) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["accessCookie"] == {"type": "apiKey", "in": "cookie", "name": "access_token"}
    assert schemes["bearer"]["scheme"] == "bearer"
    me = spec["paths"]["/api/v1/access/me"]["get"]
    assert {"accessCookie": []} in me["security"]
    assert {"bearer": []} in me["security"]


def test_every_status_the_stack_can_answer_is_documented_as_json_detail(spec: dict) -> None:
    """405/429/502/503/504 on every operation, 400/413/422 where there is a body; each with a
    JSON body holding `detail` (the proxy's own error pages are JSON too)."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            codes = {"405", "429", "502", "503", "504"}
            if "requestBody" in operation:
                codes |= {"400", "413", "422"}
            responses = operation["responses"]
            assert codes <= set(responses), (path, method, sorted(responses))
            for code in codes:
                schema = responses[code]["content"]["application/json"]["schema"]
                ref = schema.get("$ref", "").rsplit("/", 1)[-1]
                assert "detail" in spec["components"]["schemas"][ref]["properties"] or (
                    code == "503" and path == "/health"
                ), (path, method, code)
