"""The authorization matrix, against the session stack.

1. Every operation that needs the service token, taken from each service's own OpenAPI document
   (the ones declaring 401), refuses every bad credential: none, another scheme, a wrong token, a
   tampered service token, an expired / tampered / valid *viewer* token (a viewer token is never a
   service token) — and nothing happens on refusal.
2. The notifier's viewer-aware reads (product, batch, SSE, WebSocket) refuse bad viewer tokens
   (garbage, expired, tampered, signed with another key, the service token) with 401, and no
   endpoint — public reads, trending, activity, streams — shows any friend data except to the
   viewer the token names. Viewer A asking for viewer B (extra query parameters naming B) gets A's
   answer only. A positive control (B's own token) shows the data exists, so the scan can fail.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from contracts import events as ev
from services.notifier.tokens import ViewerTokens, derive_secret
from socialproof.settings import Settings
from tests.conftest import SERVICE_TOKEN
from tests.support.storefront import friends, order, product, publish
from tests.support.waiting import wait_for
from tools.devstack import Stack

pytestmark = pytest.mark.integration

#: every request sent by this module, by kind (reported at the end of the session output)
SENT: Counter[str] = Counter()


@dataclass
class World:
    item: str
    alice: str  # a viewer with no friends
    bob: str  # a viewer whose friend Zelda bought the item
    zelda: str
    zelda_name: str  # unique: must appear nowhere but in Bob's own friend data
    alice_token: str
    bob_token: str


def mint(stack: Stack, service_token: str, viewer: str) -> str:
    response = httpx.post(f"{stack.url('notifier')}/v1/viewer-tokens", json={"viewer_id": viewer},
                          headers={"Authorization": f"Bearer {service_token}"}, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["token"]


@pytest.fixture(scope="module")
def world(stack: Stack, settings: Settings) -> World:
    service_token = SERVICE_TOKEN
    run = uuid.uuid4().hex[:8]
    w = World(item=f"p-authz-{run}", alice=f"alice-{run}", bob=f"bob-{run}",
              zelda=f"zelda-{run}", zelda_name=f"Zelda{run}", alice_token="", bob_token="")
    # Zelda shares purchases with friends but stays out of the public activity feed
    publish(
        settings,
        product(w.item),
        ev.UserProfileUpdated.create({"user_id": w.zelda, "first_name": w.zelda_name},
                                     producer="social"),
        ev.PrivacySettingsChanged.create(
            {"user_id": w.zelda, "share_purchases_with_friends": True,
             "show_in_activity_feed": False}, producer="social"),
        friends(w.bob, w.zelda),
    )
    with httpx.Client(base_url=stack.url("orders"), timeout=10,
                      headers={"Authorization": f"Bearer {service_token}"}) as orders:
        order(orders, w.zelda, w.item)
    w.alice_token, w.bob_token = (mint(stack, service_token, v) for v in (w.alice, w.bob))
    url = f"{stack.url('notifier')}/v1/proof/products/{w.item}"
    wait_for(lambda: httpx.get(url, headers={"Authorization": f"Bearer {w.bob_token}"})
             .json().get("friends_bought", {}).get("count") == 1, 10,
             "Bob to see Zelda's purchase")
    return w


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bad_viewer_tokens(service_token: str, w: World) -> dict[str, str]:
    """Viewer tokens that must all be refused."""
    head, _, signature = w.alice_token.split(".")
    claims = orjson.dumps({"sub": w.bob, "exp": int(time.time()) + 600})
    return {
        "garbage": "vt1.x.y",
        "not a token": "nope",
        "expired (Bob, correctly signed)": ViewerTokens(derive_secret(service_token), 60).mint(
            w.bob, now=time.time() - 3600)[0],
        "tampered (Alice's signature on Bob's claims)": f"{head}.{b64(claims)}.{signature}",
        "signed with another key (Bob)": ViewerTokens(b"k" * 32, 600).mint(w.bob)[0],
        "unsigned (Bob)": f"{head}.{b64(claims)}.",
        "the service token": service_token,
    }


# --- 1. service-token endpoints -----------------------------------------------------------------


def protected_operations(base_url: str) -> list[tuple[str, str, dict]]:
    response = httpx.get(f"{base_url}/openapi.json", timeout=10)
    assert response.status_code == 200, f"{base_url}/openapi.json: {response.status_code}"
    ops = []
    for path, methods in response.json()["paths"].items():
        for method, op in methods.items():
            # service-token operations declare 401 and 403 (viewer-aware reads declare only 401)
            declared = op.get("responses", {})
            if "401" in declared and "403" in declared and "operations" not in op.get("tags", []):
                ops.append((method.upper(), path, op))
    return ops


#: at least these many service-token operations per service (guards against an empty matrix)
MIN_PROTECTED = {"catalog": 3, "orders": 4, "social": 11, "notifier": 1}


@pytest.mark.parametrize("service", ["catalog", "orders", "social", "notifier"])
def test_every_service_token_endpoint_refuses_every_bad_credential(
    stack: Stack, service_token: str, world: World, service: str
) -> None:
    base = stack.url(service)
    ops = protected_operations(base)
    assert len(ops) >= MIN_PROTECTED[service], [(m, p) for m, p, _ in ops]
    tampered_service = service_token[:-1] + ("A" if service_token[-1] != "A" else "B")
    credentials = {
        "none": (None, 401),
        "another scheme": (f"Basic {service_token}", 401),
        "bearer without a token": ("Bearer", 401),
        "wrong token": ("Bearer nope", 403),
        "tampered service token": (f"Bearer {tampered_service}", 403),
        "service token + suffix": (f"Bearer {service_token}x", 403),
        "Alice's valid viewer token": (f"Bearer {world.alice_token}", 403),
        **{f"viewer token: {k}": (f"Bearer {t}", 403)
           for k, t in bad_viewer_tokens(service_token, world).items() if t != service_token},
    }
    run = uuid.uuid4().hex[:8]
    # path parameters: Bob's and Zelda's ids where a user is named (viewer A asking about B)
    values = {"user_id": world.bob, "friend_id": world.zelda}
    refused: list[str] = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for method, path, op in ops:
            url = path
            for param in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
                url = url.replace("{" + param + "}", values.get(param, f"authz-{run}"))
            for name, (header, status) in credentials.items():
                headers = {"Authorization": header} if header is not None else {}
                kwargs = {"json": {}} if "requestBody" in op else {}
                if path == "/v1/viewer-tokens":
                    kwargs = {"json": {"viewer_id": world.bob}}  # Alice minting Bob's token
                response = client.request(method, url, headers=headers, **kwargs)
                SENT[f"{service} service-token matrix"] += 1
                where = f"{method} {url} with {name}"
                assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
                body = response.json()
                assert body["error"] == ("unauthorized" if status == 401 else "forbidden"), where
                assert world.zelda_name not in response.text, f"{where} leaks Zelda"
                refused.append(where)
        # And nothing happened: the resources named in the paths are untouched
        auth = {"Authorization": f"Bearer {service_token}"}
        if service == "catalog":
            assert client.get(f"/v1/products/authz-{run}").status_code == 404
        if service == "orders":
            assert client.get(f"/v1/orders/authz-{run}", headers=auth).status_code == 404
        if service == "social":
            names = client.get(f"/v1/users/{world.bob}/friends", headers=auth).json()["items"]
            assert [f["user_id"] for f in names] == [world.zelda]  # the refused DELETE did nothing
            assert client.get(f"/v1/users/{world.bob}/profile", headers=auth).status_code == 404
    print(f"\n{service}: {len(refused)} refused requests over {len(ops)} operations")


# --- 2. viewer tokens and friend data -----------------------------------------------------------


def sse_first(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """Status and the first event's data (or the error body) of an SSE request."""
    with httpx.Client(timeout=httpx.Timeout(5.0, read=5.0)) as client:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                return response.status_code, response.text
            for line in response.iter_lines():
                if line.startswith("data:"):
                    return 200, line[5:].strip()
    raise AssertionError(f"no event from {url}")


def ws_first(url: str) -> tuple[int, str]:
    """(200, first proof data) or (close code, error message) of a WebSocket request."""
    with ws_connect(url) as ws:
        first = json.loads(ws.recv(timeout=5))
        if first.get("type") == "proof":
            return 200, json.dumps(first["data"])
        try:
            ws.recv(timeout=5)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code - 4000, json.dumps(first)
    raise AssertionError(f"{url}: neither proof nor close")


def test_bad_viewer_tokens_are_refused_and_friend_data_never_leaks(
    stack: Stack, service_token: str, world: World
) -> None:
    base = stack.url("notifier")
    ws_base = base.replace("http://", "ws://")
    item = world.item
    # viewer-aware reads, and how each carries the token
    def reads(token: str | None, extra: str = "") -> list[tuple[str, tuple[int, str]]]:
        q = f"&viewer_token={token}" if token else ""
        hdr = {"Authorization": f"Bearer {token}"} if token else {}
        out = []
        for name, url in (("product", f"{base}/v1/proof/products/{item}?x=1{extra}"),
                          ("batch", f"{base}/v1/proof/products?ids={item},other{extra}")):
            r = httpx.get(url, headers=hdr, timeout=5)
            out.append((f"{name} (header)", (r.status_code, r.text)))
            r = httpx.get(url + q, timeout=5)
            out.append((f"{name} (query)", (r.status_code, r.text)))
        stream = f"{base}/v1/proof/stream?products={item}{extra}"
        out.append(("sse (header)", sse_first(stream, hdr)))
        out.append(("sse (query)", sse_first(stream + q, {})))
        out.append(("websocket", ws_first(f"{ws_base}/v1/proof/ws?products={item}{q}{extra}")))
        SENT["notifier viewer matrix"] += len(out)
        return out

    def friend_data(text: str) -> list[dict]:
        body = json.loads(text)
        states = body.get("products", [body])
        return [s["friends_bought"] for s in states if "friends_bought" in s]

    # Given: the positive control, Bob sees Zelda everywhere (so the scans below can fail)
    for where, (status, text) in reads(world.bob_token):
        assert status == 200, (where, text)
        assert world.zelda_name in text and friend_data(text)[0]["count"] == 1, (where, text)
    leaks: list[str] = []
    # When bad viewer tokens are used, Then 401 on every viewer-aware read, nothing leaks
    for case, token in bad_viewer_tokens(service_token, world).items():
        for where, (status, text) in reads(token):
            assert status == 401, (case, where, status, text)
            assert "invalid_viewer_token" in text, (case, where, text)
            if world.zelda_name in text or "friends_bought" in text:
                leaks.append(f"{case} / {where}")
    # When there is no token, Then public counters only
    for where, (status, text) in reads(None):
        assert status == 200, (where, text)
        if world.zelda_name in text or friend_data(text):
            leaks.append(f"anonymous / {where}")
    # When Alice asks for Bob (her own token, Bob named in every parameter a client might try),
    # Then she gets her own answer: no friends bought
    for where, (status, text) in reads(world.alice_token,
                                       f"&viewer_id={world.bob}&viewer={world.bob}"
                                       f"&user_id={world.bob}&sub={world.bob}"):
        assert status == 200, (where, text)
        if world.zelda_name in text or any(f["count"] for f in friend_data(text)):
            leaks.append(f"Alice asking for Bob / {where}")
    # And the public endpoints without viewer data never name Zelda, whatever token is sent
    for token in [None, world.alice_token, world.bob_token,
                  *bad_viewer_tokens(service_token, world).values()]:
        hdr = {"Authorization": f"Bearer {token}"} if token else {}
        for url in (f"{base}/v1/trending", f"{base}/v1/activity?products={item}",
                    f"{stack.url('social')}/v1/products/{item}/reviews",
                    f"{stack.url('catalog')}/v1/products/{item}"):
            r = httpx.get(url, headers=hdr, timeout=5)
            SENT["public endpoints scan"] += 1
            if world.zelda_name in r.text or "friends_bought" in r.text:
                leaks.append(f"{url} with {token and token[:12]}")
    assert leaks == [], leaks
    print(f"\nviewer matrix: {dict(SENT)}; leaks: {len(leaks)}")
