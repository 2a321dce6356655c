"""The shared HTTP behaviour every service gets from ``create_service_app``: one error shape,
validation errors naming the field, 503 + Retry-After on dependency outages, 413, auth, probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.exceptions
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from socialproof.http import ServiceAuth, create_service_app, field_path
from socialproof.kafka import PublishFailed
from socialproof.settings import Settings

TOKEN = "unit-test-token-0123456789"


class Body(BaseModel):
    name: str = Field(min_length=1)
    items: list[int] = Field(min_length=1)


def make_app(redis_ok: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    async def healthy() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("connection refused")

    settings = Settings(service_token=TOKEN, max_body_bytes=2048)
    app = create_service_app(
        service="unit",
        settings=settings,
        description="test",
        lifespan=lifespan,
        readiness=lambda _: {"kafka": healthy, "redis": healthy if redis_ok else broken},
    )

    @app.post("/things", status_code=201)
    async def create(body: Body, _: ServiceAuth) -> dict:
        return {"ok": True}

    @app.post("/broker-down")
    async def broker_down() -> None:
        raise PublishFailed("_MSG_TIMED_OUT: Local: Message timed out")

    @app.get("/redis-down")
    async def redis_down() -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def client() -> TestClient:
    with TestClient(make_app(), raise_server_exceptions=False) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_validation_errors_name_each_field(client: TestClient) -> None:
    response = client.post("/things", json={"name": "", "items": ["x"]}, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_failed"
    assert {f["field"] for f in body["fields"]} == {"name", "items[0]"}
    assert "name" in body["message"]


def test_missing_token_is_401_and_wrong_token_is_403(client: TestClient) -> None:
    ok = {"name": "a", "items": [1]}
    missing = client.post("/things", json=ok)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["error"] == "unauthorized"
    wrong = client.post("/things", json=ok, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "forbidden"
    assert client.post("/things", json=ok, headers=AUTH).status_code == 201


def test_broker_and_redis_outages_are_503_with_retry_after(client: TestClient) -> None:
    for response in (client.post("/broker-down"), client.get("/redis-down")):
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["error"] in ("broker_unavailable", "store_unavailable")


def test_unexpected_errors_use_the_same_shape_without_leaking_details(client: TestClient) -> None:
    response = client.get("/bug")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error", "message": "an unexpected error occurred", "fields": []
    }


def test_bodies_over_the_limit_get_413(client: TestClient) -> None:
    big = {"name": "x" * 4000, "items": [1]}
    response = client.post("/things", json=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


def test_unknown_routes_use_the_error_shape(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_probes_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "service": "unit"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"kafka": "ok", "redis": "ok"}
    client.get("/healthz")
    metrics = client.get("/metrics").text
    assert 'socialproof_http_requests_total{method="GET",route="/healthz",service="unit"' in metrics


def test_readyz_names_the_failing_dependency() -> None:
    with TestClient(make_app(redis_ok=False)) as c:
        response = c.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["checks"]["redis"].startswith("failing: ConnectionError")
    assert response.json()["checks"]["kafka"] == "ok"


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "lines", 0, "quantity"), "lines[0].quantity"),
        (("query", "products"), "products"),
        (("body",), "body"),
    ],
)
def test_field_paths_read_like_the_json(loc: tuple, expected: str) -> None:
    assert field_path(loc) == expected


def test_settings_read_the_fixed_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/1")
    monkeypatch.setenv("SOCIALPROOF_SERVICE_TOKEN", "s" * 20)
    monkeypatch.setenv("SOCIALPROOF_LOG_LEVEL", "debug")
    s = Settings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.redis_url == "redis://r:6379/1"
    assert s.require_service_token() == "s" * 20
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port", "kafka_bootstrap_servers"),
        ("REDIS_URL", "http://x", "redis_url"),
        ("SOCIALPROOF_PRODUCE_TIMEOUT_MS", "10", "produce_timeout_ms"),
    ],
)
def test_invalid_settings_fail_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str
) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert caught.value.errors()[0]["loc"][0] in (field, var)


def test_a_missing_or_short_service_token_stops_the_service_at_start() -> None:
    with pytest.raises(SystemExit, match="SOCIALPROOF_SERVICE_TOKEN is not set"):
        Settings(service_token=None).require_service_token()
    with pytest.raises(SystemExit, match="at least 16"):
        Settings(service_token="short").require_service_token()
