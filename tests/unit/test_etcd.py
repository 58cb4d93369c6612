"""The etcd client against a scripted JSON gateway (no socket): every request's path
and body as etcd's v3 gateway takes it, the replies read back, the login and its
renewal, failing over between members, bounded replies, the deadline, the watch."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from dograh_systemd import etcd

Reply = tuple[int, bytes]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def header(revision: int = 7) -> dict[str, Any]:
    return {"header": {"revision": str(revision)}}


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.lines = body.splitlines(keepends=True)

    def read(self, limit: int) -> bytes:
        return self.body[:limit]

    def readline(self, limit: int) -> bytes:
        return self.lines.pop(0)[:limit] if self.lines else b""


class Connection:
    def __init__(self, gateway: Gateway, endpoint: str) -> None:
        self.gateway = gateway
        self.endpoint = endpoint
        self.sock = None
        self.timeout = 0.0
        self.reply: Reply | None = None

    def request(self, method: str, path: str, body: str, headers: dict[str, str]) -> None:
        assert method == "POST" and headers["Content-Type"] == "application/json"
        self.reply = self.gateway.answer(self.endpoint, path, json.loads(body),
                                         headers.get("Authorization"))

    def getresponse(self) -> Response:
        assert self.reply is not None
        return Response(*self.reply)

    def close(self) -> None:
        self.gateway.closed.append(self.endpoint)


class Gateway:
    """Each member's answers, scripted: ``down`` members fail to connect; ``handle``
    answers every request the others get."""

    def __init__(self, handle: Callable[[str, str, dict[str, Any], str | None], Reply]) -> None:
        self.handle = handle
        self.down: set[str] = set()
        self.asked: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.closed: list[str] = []

    def answer(self, endpoint: str, path: str, body: dict[str, Any], token: str | None
               ) -> Reply:
        if endpoint in self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        self.asked.append((endpoint, path, body, token))
        return self.handle(endpoint, path, body, token)

    def client(self, endpoints: list[str], credentials: etcd.Credentials | None = None
               ) -> etcd.Client:
        gateway = self

        class Scripted(etcd.Client):
            def _connection_to(self, endpoint: str) -> Connection:  # type: ignore[override]
                return Connection(gateway, endpoint)

        return Scripted(endpoints, credentials=credentials)


def ok(data: dict[str, Any]) -> Reply:
    return 200, json.dumps(data).encode()


A, B, C = "https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"


def test_each_request_is_what_the_gateway_takes() -> None:
    gateway = Gateway(lambda endpoint, path, body, token: ok(header()))
    client = gateway.client([A])
    assert client.put("/dograh/x/hosts/w1", "v", lease=42) == 7
    client.range("/dograh/x/", prefix=True)
    client.delete("/dograh/x/desired/", prefix=True)
    client.replace("/k", "v", 0)
    client.replace("/k", "v", 9, lease=3)
    client.delete_if_held("/k", 5)
    bodies = [(path, body) for _, path, body, _ in gateway.asked]
    assert bodies == [
        ("/v3/kv/put", {"key": b64("/dograh/x/hosts/w1"), "value": b64("v"), "lease": "42"}),
        ("/v3/kv/range", {"key": b64("/dograh/x/"), "range_end": b64("/dograh/x0")}),
        ("/v3/kv/deleterange", {"key": b64("/dograh/x/desired/"),
                                "range_end": b64("/dograh/x/desired0")}),
        ("/v3/kv/txn", {"compare": [{"key": b64("/k"), "result": "EQUAL", "target": "CREATE",
                                     "create_revision": "0"}],
                        "success": [{"request_put": {"key": b64("/k"), "value": b64("v")}}]}),
        ("/v3/kv/txn", {"compare": [{"key": b64("/k"), "result": "EQUAL", "target": "MOD",
                                     "mod_revision": "9"}],
                        "success": [{"request_put": {"key": b64("/k"), "value": b64("v"),
                                                     "lease": "3"}}]}),
        ("/v3/kv/txn", {"compare": [{"key": b64("/k"), "target": "LEASE", "result": "EQUAL",
                                     "lease": "5"}],
                        "success": [{"request_delete_range": {"key": b64("/k")}}]}),
    ]


def test_replies_are_read_back() -> None:
    kv = {"key": b64("/k"), "value": b64("held"), "create_revision": "11",
          "mod_revision": "12", "lease": "99"}
    replies = {
        "/v3/kv/range": ok({**header(13), "kvs": [kv]}),
        "/v3/kv/txn": ok({**header(14), "succeeded": False,
                          "responses": [{"response_range": {"kvs": [kv]}}]}),
        "/v3/lease/grant": ok({**header(), "ID": "4242", "TTL": "10"}),
        "/v3/lease/keepalive": ok({"result": {"ID": "4242", "TTL": "10"}}),
    }
    client = Gateway(lambda endpoint, path, body, token: replies[path]).client([A])
    found, revision = client.range("/k")
    assert revision == 13
    assert found == [etcd.KeyValue("/k", b"held", 11, 12, 99)]
    assert client.get("/k") == found[0]
    assert client.create("/k", "mine", lease=1) == (False, 11)  # held already, since 11
    assert client.grant(10) == 4242
    assert client.keepalive(4242) == 10
    replies["/v3/kv/txn"] = ok({**header(15), "succeeded": True})
    assert client.create("/k", "mine") == (True, 15)
    # A lease that is gone: the gateway answers 200 with no TTL.
    replies["/v3/lease/keepalive"] = ok({"result": {"ID": "4242"}})
    assert client.keepalive(4242) == 0


def test_it_logs_in_once_and_again_when_its_token_is_refused() -> None:
    tokens = (f"t{n}" for n in itertools.count(1))
    accepted = {"t2"}

    def handle(endpoint: str, path: str, body: dict[str, Any], token: str | None) -> Reply:
        if path == "/v3/auth/authenticate":
            assert body == {"name": "dograh-w1", "password": "pw"} and token is None
            return ok({**header(), "token": next(tokens)})
        if token not in accepted:
            return 401, json.dumps({"error": "etcdserver: invalid auth token",
                                    "code": 16}).encode()
        assert token == "t2"
        return ok(header())

    gateway = Gateway(handle)
    client = gateway.client([A], etcd.Credentials("dograh-w1", "pw"))
    client.put("/k", "v")
    client.put("/k", "v")
    assert [path for _, path, _, _ in gateway.asked] == [
        "/v3/auth/authenticate", "/v3/kv/put",  # t1, refused
        "/v3/auth/authenticate", "/v3/kv/put",  # t2
        "/v3/kv/put"]                           # t2 kept
    accepted.clear()  # refused again after a new login: not a loop, a refusal
    with pytest.raises(etcd.Refused):
        client.put("/k", "v")


def test_a_member_that_does_not_answer_is_left_for_the_next() -> None:
    gateway = Gateway(lambda endpoint, path, body, token: ok(header()))
    gateway.down.add(A)
    client = gateway.client([A, B, C])
    client.put("/k", "v")
    client.put("/k", "v")
    assert [endpoint for endpoint, *_ in gateway.asked] == [B, B]  # it stays with B
    gateway.down.update({B, C})
    with pytest.raises(etcd.Unavailable) as failed:
        client.put("/k", "v")
    message = str(failed.value)
    assert message.startswith("no etcd member answers (")
    assert all(endpoint in message for endpoint in (A, B, C))
    assert "\n" not in message


@pytest.mark.parametrize(("status", "reply"), [
    (503, {"message": "etcdserver: request timed out", "code": 14}),
    (200, {"error": {"grpc_code": 14, "message": "etcdserver: no leader"}}),
    (500, {"message": "internal", "code": 13}),
])
def test_an_unavailable_member_is_left_for_the_next(status: int, reply: dict[str, Any]
                                                     ) -> None:
    gateway = Gateway(lambda endpoint, path, body, token: (
        (status, json.dumps(reply).encode()) if endpoint == A else ok(header())))
    client = gateway.client([A, B])
    assert client.put("/k", "v") == 7
    assert [endpoint for endpoint, *_ in gateway.asked] == [A, B]


def test_a_refusal_is_not_asked_of_another_member() -> None:
    gateway = Gateway(lambda endpoint, path, body, token: (
        403, json.dumps({"message": "etcdserver: permission denied", "code": 7}).encode()))
    client = gateway.client([A, B])
    with pytest.raises(etcd.Refused) as refused:
        client.put("/dograh/x/hosts/w2", "v")
    assert refused.value.code == 7 and str(refused.value) == "etcdserver: permission denied"
    assert [endpoint for endpoint, *_ in gateway.asked] == [A]


@pytest.mark.parametrize("body", [b"x" * (etcd.LIMIT + 1), b"<html>", b"[1, 2]"])
def test_a_reply_too_large_or_not_an_object_is_unavailable(body: bytes) -> None:
    client = Gateway(lambda endpoint, path, b, token: (200, body)).client([A])
    with pytest.raises(etcd.Unavailable) as failed:
        client.put("/k", "v")
    assert not isinstance(failed.value, etcd.Refused)
    assert len(str(failed.value)) < 400


def test_no_call_runs_past_the_deadline() -> None:
    gateway = Gateway(lambda endpoint, path, body, token: ok(header()))
    client = gateway.client([A, B])
    client.deadline = time.monotonic() - 0.1
    with pytest.raises(etcd.Unavailable, match="out of time"):
        client.put("/k", "v")
    assert gateway.asked == []
    client.deadline = None
    assert client.put("/k", "v") == 7


def test_the_watch_yields_each_batch_until_it_is_cancelled() -> None:
    def event(kind: str, key: str, value: str, revision: int) -> dict[str, Any]:
        return {"type": kind, "kv": {"key": b64(key), "value": b64(value),
                                     "mod_revision": str(revision)}}

    stream = b"".join(json.dumps({"result": result}).encode() + b"\n" for result in (
        {"created": True},
        {"events": [event("PUT", "/p/a", "1", 20), event("PUT", "/p/b", "2", 21)]},
        {"events": [{"type": "DELETE", "kv": {"key": b64("/p/a"), "mod_revision": "22"}}]},
        {"canceled": True},
        {"events": [event("PUT", "/p/never", "x", 23)]}))
    gateway = Gateway(lambda endpoint, path, body, token: (200, stream))
    client = gateway.client([A])
    batches = list(client.watch("/p/", 20))
    assert batches == [[], [etcd.Event("PUT", "/p/a", b"1", 20),
                            etcd.Event("PUT", "/p/b", b"2", 21)],
                       [etcd.Event("DELETE", "/p/a", b"", 22)]]
    assert gateway.asked[0][1:3] == ("/v3/watch", {"create_request": {
        "key": b64("/p/"), "range_end": b64("/p0"), "start_revision": "20"}})
    assert gateway.closed == [A]  # its own connection, closed with it


def test_a_watch_refused_is_unavailable() -> None:
    client = Gateway(lambda endpoint, path, body, token: (503, b"{}")).client([A])
    with pytest.raises(etcd.Unavailable, match="watch refused: HTTP 503"):
        list(client.watch("/p/", 1))


def test_a_prefix_ends_at_its_last_byte_plus_one() -> None:
    assert etcd.prefix_end("/dograh/c/") == "/dograh/c0"
    assert etcd.prefix_end("a") == "b"
