"""The etcd client against a scripted JSON gateway (no socket): every request's path
and body as etcd's v3 gateway takes it, the replies read back, the login and its
renewal, failing over between members, bounded replies, the deadline, the watch; and
a session against a gateway that answers as etcd does (proto3's defaults left out of
every reply, int64s as strings), so a field the client names wrong fails."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
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


class Sock:
    """The timeouts a connection's socket was given."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def settimeout(self, seconds: float | None) -> None:
        self.timeouts.append(seconds)


class Endless(Response):
    """A reply that never ends (a member gone wrong, or whatever took its address): it
    gives what is asked for, and a read without a bound would never return."""

    def __init__(self) -> None:
        super().__init__(200, b"")

    def read(self, limit: int | None = None) -> bytes:
        if limit is None or limit < 0:
            raise MemoryError("a read of an endless reply without a bound")
        return b" " * limit

    def readline(self, limit: int | None = None) -> bytes:
        return self.read(limit)


class Connection:
    def __init__(self, gateway: Gateway, endpoint: str) -> None:
        self.gateway = gateway
        self.endpoint = endpoint
        self.sock = Sock()
        gateway.socks.append(self.sock)
        gateway.connections.append(self)
        self.timeout = 0.0
        self.reply: Reply | Response | None = None

    def request(self, method: str, path: str, body: str, headers: dict[str, str]) -> None:
        assert method == "POST" and headers["Content-Type"] == "application/json"
        assert all(isinstance(value, str) for value in headers.values()), headers
        self.reply = self.gateway.answer(self.endpoint, path, json.loads(body),
                                         headers.get("Authorization"))

    def getresponse(self) -> Response:
        assert self.reply is not None
        return self.reply if isinstance(self.reply, Response) else Response(*self.reply)

    def close(self) -> None:
        self.gateway.closed.append(self.endpoint)


class Gateway:
    """Each member's answers, scripted: ``down`` members fail to connect; ``handle``
    answers every request the others get."""

    def __init__(self, handle: Callable[[str, str, dict[str, Any], str | None],
                                        Reply | Response]) -> None:
        self.handle = handle
        self.down: set[str] = set()
        self.asked: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.closed: list[str] = []
        self.socks: list[Sock] = []
        self.connections: list[Connection] = []

    def answer(self, endpoint: str, path: str, body: dict[str, Any], token: str | None
               ) -> Reply | Response:
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


# -- against etcd's own semantics ---------------------------------------------------------


class Etcd:
    """One member's gateway, as etcd 3.4 and 3.5 answer: a key space with revisions,
    leases, transactions, a watch from a revision, and a user who must log in. Replies
    leave out what proto3 leaves out (an empty value, a lease of 0, a PUT event's type,
    ``succeeded: false``, an empty ``kvs``)."""

    USER, PASSWORD, TOKEN = "dograh-w1", "pw", "tok.1"

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.revision = 1
        self.leases: dict[int, int] = {}
        self.events: list[dict[str, Any]] = []

    def __call__(self, endpoint: str, path: str, body: dict[str, Any], token: str | None
                 ) -> Reply:
        if path == "/v3/auth/authenticate":
            if (body.get("name"), body.get("password")) != (self.USER, self.PASSWORD):
                return 400, json.dumps({"error": "etcdserver: authentication failed",
                                        "code": 3}).encode()
            return ok({**header(self.revision), "token": self.TOKEN})
        if token != self.TOKEN:
            return 401, json.dumps({"error": "etcdserver: invalid auth token",
                                    "code": 16}).encode()
        if path == "/v3/watch":
            start = int(body["create_request"]["start_revision"])
            key, end = (unb64(body["create_request"][k]) for k in ("key", "range_end"))
            lines = [{"result": {**header(self.revision), "created": True}}] + [
                {"result": {**header(self.revision), "events": [event]}}
                for event in self.events if int(event["kv"]["mod_revision"]) >= start
                and key <= unb64(event["kv"]["key"]) < end]
            return 200, b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        try:
            return ok(self.answer(path, body))
        except LookupError as missing:
            return 400, json.dumps({"error": str(missing.args[0]), "code": 5}).encode()

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/v3/kv/txn":
            holds = all(self.compare(c) for c in body.get("compare", []))
            ops = body.get("success" if holds else "failure", [])
            responses = [self.op(op) for op in ops]
            return {**header(self.revision), **({"succeeded": True} if holds else {}),
                    **({"responses": responses} if responses else {})}
        if path == "/v3/lease/grant":
            lease = 7000 + len(self.leases) + 1
            self.leases[lease] = int(body["TTL"])
            return {**header(self.revision), "ID": str(lease), "TTL": body["TTL"]}
        if path == "/v3/lease/keepalive":
            lease = int(body["ID"])
            ttl = self.leases.get(lease, 0)
            return {"result": {**header(self.revision), "ID": str(lease),
                               **({"TTL": str(ttl)} if ttl else {})}}
        if path == "/v3/lease/revoke":
            lease = int(body["ID"])
            if self.leases.pop(lease, None) is None:
                raise LookupError("etcdserver: requested lease not found")
            for key in [k for k, kv in self.keys.items() if kv.get("lease") == str(lease)]:
                self.remove(key)
            return header(self.revision)
        return self.op({{"/v3/kv/put": "request_put", "/v3/kv/range": "request_range",
                         "/v3/kv/deleterange": "request_delete_range"}[path]: body}
                       ).popitem()[1]

    def op(self, op: dict[str, Any]) -> dict[str, Any]:
        (kind, request), = op.items()
        key = unb64(request["key"])
        matched = sorted(k for k in self.keys if k == key or key <= k < unb64(
            request["range_end"])) if "range_end" in request else [key] * (key in self.keys)
        if kind == "request_put":
            lease = int(request.get("lease", 0))
            if lease and lease not in self.leases:
                raise LookupError("etcdserver: requested lease not found")
            self.revision += 1
            old = self.keys.get(key)
            kv = {"key": request["key"], "create_revision": str(
                old["create_revision"] if old else self.revision),
                "mod_revision": str(self.revision), "version": "1"}
            if request.get("value"):
                kv["value"] = request["value"]
            if lease:
                kv["lease"] = str(lease)
            self.keys[key] = kv
            self.events.append({"kv": kv})
            return {"response_put": header(self.revision)}
        if kind == "request_range":
            kvs = [self.keys[k] for k in matched]
            return {"response_range": {**header(self.revision), **(
                {"kvs": kvs, "count": str(len(kvs))} if kvs else {})}}
        for k in matched:
            self.remove(k)
        return {"response_delete_range": {**header(self.revision), **(
            {"deleted": str(len(matched))} if matched else {})}}

    def remove(self, key: str) -> None:
        self.revision += 1
        kv = self.keys.pop(key)
        self.events.append({"type": "DELETE", "kv": {"key": kv["key"],
                                                     "mod_revision": str(self.revision)}})

    def compare(self, compare: dict[str, Any]) -> bool:
        kv = self.keys.get(unb64(compare["key"]), {})
        field = {"CREATE": "create_revision", "MOD": "mod_revision", "LEASE": "lease",
                 "VERSION": "version"}[compare.get("target", "VERSION")]
        assert compare.get("result", "EQUAL") == "EQUAL"
        return int(kv.get(field, 0)) == int(compare.get(field, 0))


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def test_a_session_against_etcds_own_semantics() -> None:
    gateway = Gateway(Etcd())
    client = gateway.client([A], etcd.Credentials(Etcd.USER, Etcd.PASSWORD))
    written = client.put("/c/a", "1")
    assert client.get("/c/a") == etcd.KeyValue("/c/a", b"1", written, written, 0)
    assert client.get("/c/none") is None
    lease = client.grant(10)
    assert client.keepalive(lease) == 10
    won, since = client.create("/c/leaders/ari", "w1", lease=lease)
    assert won
    assert client.create("/c/leaders/ari", "w2") == (False, since)
    held = client.get("/c/leaders/ari")
    assert held is not None and (held.value, held.lease) == (b"w1", lease)
    assert not client.replace("/c/leaders/ari", "w1", held.mod_revision - 1, lease=lease)
    assert client.replace("/c/leaders/ari", "w1", held.mod_revision, lease=lease)
    assert client.replace("/c/new", "x", 0) and not client.replace("/c/new", "y", 0)
    assert not client.delete_if_held("/c/leaders/ari", lease + 1)
    assert client.delete_if_held("/c/leaders/ari", lease)
    assert client.get("/c/leaders/ari") is None
    client.put("/c/p/empty", "", lease=lease)
    client.put("/c/p0", "beside")
    empty = client.get("/c/p/empty")
    assert empty is not None and (empty.value, empty.lease) == (b"", lease)
    assert client.range("/c/p/")[0] == []  # the key itself only, not what it begins
    found, at = client.range("/c/p/", prefix=True)
    assert [kv.key for kv in found] == ["/c/p/empty"] and at == gateway.handle.revision
    client.put("/c/a2", "2")
    client.delete("/c/a")
    assert [kv.key for kv in client.range("/c/", prefix=True)[0]] == [
        "/c/a2", "/c/new", "/c/p/empty", "/c/p0"]
    client.revoke(lease)
    assert client.keepalive(lease) == 0
    assert client.get("/c/p/empty") is None  # gone with its lease
    client.delete("/c/", prefix=True)
    assert client.range("/c/", prefix=True)[0] == []
    # Every change from the first write on, as the watch gives them.
    changes = [event for batch in client.watch("/c/", written) for event in batch]
    assert changes[0] == etcd.Event("PUT", "/c/a", b"1", written)
    assert etcd.Event("PUT", "/c/p/empty", b"", empty.mod_revision) in changes
    assert [(e.kind, e.key) for e in changes[-4:]] == [
        ("DELETE", "/c/p/empty"), ("DELETE", "/c/a2"), ("DELETE", "/c/new"),
        ("DELETE", "/c/p0")]
    assert client.get("/c/p0") is None
    assert [path for _, path, _, _ in gateway.asked].count("/v3/auth/authenticate") == 1


def test_a_put_on_a_lease_that_is_gone_is_refused() -> None:
    client = Gateway(Etcd()).client([A], etcd.Credentials(Etcd.USER, Etcd.PASSWORD))
    with pytest.raises(etcd.Refused) as refused:
        client.put("/c/k", "v", lease=99)
    assert (str(refused.value), refused.value.code) == (
        "etcdserver: requested lease not found", 5)


def test_a_reply_of_exactly_the_limit_is_read_and_one_byte_more_is_not() -> None:
    body = json.dumps(header()).encode()
    exact = body + b" " * (etcd.LIMIT - len(body))
    assert Gateway(lambda *_: (200, exact)).client([A]).put("/k", "v") == 7
    with pytest.raises(etcd.Unavailable) as failed:
        Gateway(lambda *_: (200, exact + b" ")).client([A]).put("/k", "v")
    assert str(failed.value) == "no etcd member answers (https://10.0.0.1:2379: a reply " \
        "larger than 4 MiB)"


@pytest.mark.parametrize(("status", "body", "message", "code"), [
    (200, {"error": {"grpc_code": 5, "message": "etcdserver: requested lease not found"}},
     "etcdserver: requested lease not found", 5),
    (400, {"error": {"message": "etcdserver: bad"}}, "etcdserver: bad", 0),
    (400, {"error": {"grpc_code": 9}}, "HTTP 400", 9),
    (400, {"error": "etcdserver: key not found", "code": 3}, "etcdserver: key not found", 3),
    (400, {"message": "etcdserver: too many operations"}, "etcdserver: too many operations", 0),
    (200, {"code": 9, "message": "etcdserver: failed precondition"},
     "etcdserver: failed precondition", 9),
    (403, {}, "HTTP 403", 0),
])
def test_each_shape_of_refusal_is_read(status: int, body: dict[str, Any], message: str,
                                       code: int) -> None:
    client = Gateway(lambda *_: (status, json.dumps(body).encode())).client([A])
    with pytest.raises(etcd.Refused) as refused:
        client.put("/k", "v")
    assert (str(refused.value), refused.value.code) == (message, code)


@pytest.mark.parametrize(("status", "body", "message"), [
    (502, b"<html>", "HTTP 502, not JSON"), (200, b"[1]", "HTTP 200, not a JSON object"),
])
def test_a_reply_not_an_object_says_what_it_was(status: int, body: bytes, message: str
                                               ) -> None:
    client = Gateway(lambda *_: (status, body)).client([A, B])
    with pytest.raises(etcd.Unavailable) as failed:
        client.put("/k", "v")
    assert str(failed.value) == (f"no etcd member answers ({A}: {message}; "
                                 f"{B}: {message})")


def test_an_old_auth_store_logs_in_again_and_a_refusal_does_not() -> None:
    replies = [(400, {"code": 9, "message": "etcdserver: revision of auth store is old"}),
               (200, header()), (403, {"code": 7, "message": "etcdserver: permission denied"})]

    def handle(endpoint: str, path: str, body: dict[str, Any], token: str | None) -> Reply:
        if path == "/v3/auth/authenticate":
            return ok({**header(), "token": "t"})
        status, reply = replies.pop(0)
        return status, json.dumps(reply).encode()

    gateway = Gateway(handle)
    client = gateway.client([A], etcd.Credentials("dograh-w1", "pw"))
    assert client.put("/k", "v") == 7
    with pytest.raises(etcd.Refused):
        client.put("/k", "v")
    assert [path for _, path, _, _ in gateway.asked] == [
        "/v3/auth/authenticate", "/v3/kv/put", "/v3/auth/authenticate", "/v3/kv/put",
        "/v3/kv/put"]


def test_a_call_gets_the_time_left_to_its_deadline() -> None:
    gateway = Gateway(lambda *_: ok(header()))
    client = gateway.client([A])
    client.put("/k", "v")
    client.deadline = time.monotonic() + 1.5  # under the 2 s timeout: the deadline rules
    client.put("/k", "v")
    assert 1.0 < gateway.socks[0].timeouts[-1] <= 1.5  # type: ignore[operator]
    client.deadline = time.monotonic() - 0.1
    with pytest.raises(etcd.Unavailable) as failed:
        client.put("/k", "v")
    assert str(failed.value) == "no etcd member answers (out of time)"


def test_a_client_needs_an_endpoint() -> None:
    with pytest.raises(ValueError, match=r"^an etcd client needs at least one endpoint$"):
        etcd.Client([])


def test_a_keepalive_reply_without_its_result_wrapper_is_read() -> None:
    client = Gateway(lambda *_: ok({"ID": "1", "TTL": "9"})).client([A])
    assert client.keepalive(1) == 9


def test_it_trusts_the_ca_it_is_given(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp_path / "k"),
                    "-subj", "/CN=dograh test etcd CA", "-days", "1", "-out", str(ca)],
                   check=True, capture_output=True)
    connection = etcd.Client([A], ca=ca)._connection_to(A)
    trusted = connection._context.get_ca_certs()  # type: ignore[attr-defined]
    assert [dict(rdn[0] for rdn in cert["subject"]) for cert in trusted] == [
        {"commonName": "dograh test etcd CA"}]


def test_a_watch_is_quiet_for_so_long_only_and_ends_on_a_line_too_long() -> None:
    line = {"result": {"events": [{"kv": {"key": b64("/p/a"), "mod_revision": "3"}}]}}
    exact = json.dumps(line).encode()
    exact += b" " * (etcd.LIMIT - len(exact) - 1) + b"\n"
    stream = (exact + json.dumps({"error": {"grpc_code": 1, "message": "x"}}).encode()
              + b"\n" + b"{" * (etcd.LIMIT + 1) + b"\n")
    gateway = Gateway(lambda *_: (200, stream))
    batches = list(gateway.client([A]).watch("/p/", 3))
    assert batches == [[etcd.Event("PUT", "/p/a", b"", 3)], []]
    assert gateway.socks[0].timeouts == [etcd.WATCH_QUIET]
    broken = Gateway(lambda *_: (200, b"{not json\n")).client([A])
    with pytest.raises(etcd.Unavailable, match=r"^the watch ended: "):
        list(broken.watch("/p/", 1))


# -- logging in for a watch, bounds, timeouts, what an operator reads -----------------------


class Reader(Etcd):
    """etcd's RBAC as each host's role has it: it may read the cluster's keys (under /c/)
    and nothing else; anything else is ``permission denied``."""

    def __call__(self, endpoint: str, path: str, body: dict[str, Any], token: str | None
                 ) -> Reply:
        request = body.get("create_request", body)
        if token == self.TOKEN and path in ("/v3/kv/range", "/v3/watch") \
                and not unb64(request["key"]).startswith("/c/"):
            return 403, json.dumps({"error": "etcdserver: permission denied",
                                    "code": 7}).encode()
        return super().__call__(endpoint, path, body, token)


def test_a_watch_as_the_first_call_logs_in_without_reading_outside_the_cluster() -> None:
    # An agent's watch thread may start before its first read: its login must not need
    # a key its role may not read.
    members = Reader()
    client = Gateway(members).client([A], etcd.Credentials(Etcd.USER, Etcd.PASSWORD))
    members.answer("/v3/kv/put", {"key": b64("/c/a"), "value": b64("1")})
    assert list(client.watch("/c/", 1)) == [[], [etcd.Event("PUT", "/c/a", b"1", 2)]]


def test_a_watch_whose_login_finds_no_member_is_unavailable_and_the_next_logs_in() -> None:
    gateway = Gateway(Etcd())
    gateway.down.add(A)
    client = gateway.client([A, B], etcd.Credentials(Etcd.USER, Etcd.PASSWORD))
    # The login goes to the member that answers, and the watch with it.
    assert list(client.watch("/c/", 1)) == [[]]
    assert [(endpoint, path) for endpoint, path, *_ in gateway.asked] == [
        (B, "/v3/auth/authenticate"), (B, "/v3/watch")]
    gateway.down.add(B)
    lost = gateway.client([A, B], etcd.Credentials(Etcd.USER, Etcd.PASSWORD))
    with pytest.raises(etcd.Unavailable) as failed:
        list(lost.watch("/c/", 1))
    assert str(failed.value) == (f"no etcd member answers ({A}: [Errno 111] Connection "
                                 f"refused; {B}: [Errno 111] Connection refused)")


def test_a_request_retried_after_a_new_login_is_the_same_request() -> None:
    logins = itertools.count(1)

    def handle(endpoint: str, path: str, body: dict[str, Any], token: str | None) -> Reply:
        if path == "/v3/auth/authenticate":
            return ok({**header(), "token": f"t{next(logins)}"})
        if token == "t1":  # it expired
            return 401, json.dumps({"error": "etcdserver: invalid auth token",
                                    "code": 16}).encode()
        return ok(header())

    gateway = Gateway(handle)
    gateway.client([A], etcd.Credentials("dograh-w1", "pw")).put("/k", "v", lease=3)
    puts = [(body, token) for _, path, body, token in gateway.asked if path == "/v3/kv/put"]
    sent = {"key": b64("/k"), "value": b64("v"), "lease": "3"}
    assert puts == [(sent, "t1"), (sent, "t2")]


def test_what_each_member_said_is_in_the_one_line() -> None:
    said = {A: "etcdserver: request timed out", B: "etcdserver: leader changed"}
    client = Gateway(lambda endpoint, *_: (503, json.dumps(
        {"message": said[endpoint], "code": 14}).encode())).client([A, B])
    with pytest.raises(etcd.Unavailable) as failed:
        client.put("/k", "v")
    assert str(failed.value) == (f"no etcd member answers ({A}: etcdserver: request timed "
                                 f"out; {B}: etcdserver: leader changed)")


def test_a_reply_that_never_ends_is_read_to_the_bound_only() -> None:
    client = Gateway(lambda *_: Endless()).client([A])
    with pytest.raises(etcd.Unavailable) as failed:
        client.put("/k", "v")
    assert str(failed.value) == f"no etcd member answers ({A}: a reply larger than 4 MiB)"
    # A watch's line that never ends: the stream is over, this process did not grow.
    assert list(Gateway(lambda *_: Endless()).client([A]).watch("/p/", 1)) == []


def test_an_empty_reply_is_an_empty_object() -> None:
    # A revoke answered with nothing is done; a refusal with nothing says its status.
    assert Gateway(lambda *_: (200, b"")).client([A]).revoke(5) is None
    client = Gateway(lambda *_: (403, b"")).client([A, B])
    with pytest.raises(etcd.Refused) as refused:
        client.put("/k", "v")
    assert (str(refused.value), refused.value.code) == ("HTTP 403", 0)


def test_a_call_with_under_a_second_left_is_made_and_connects_for_that_long_only() -> None:
    gateway = Gateway(lambda *_: ok(header()))
    client = gateway.client([A])
    client.deadline = time.monotonic() + 0.5
    assert client.put("/k", "v") == 7
    # The new connection, and its socket, wait no longer than the deadline allows.
    assert 0.2 < gateway.connections[0].timeout <= 0.5


def test_each_endpoint_is_reached_at_its_own_host_and_port() -> None:
    client = etcd.Client([A], timeout=1.5)
    reached = {endpoint: client._connection_to(endpoint) for endpoint in (
        "https://10.0.0.1:12379", "https://etcd1.example", "http://127.0.0.1:22379",
        "http://etcd2.example")}
    assert {endpoint: (type(c).__name__, c.host, c.port, c.timeout)
            for endpoint, c in reached.items()} == {
        "https://10.0.0.1:12379": ("HTTPSConnection", "10.0.0.1", 12379, 1.5),
        "https://etcd1.example": ("HTTPSConnection", "etcd1.example", 2379, 1.5),
        "http://127.0.0.1:22379": ("HTTPConnection", "127.0.0.1", 22379, 1.5),
        "http://etcd2.example": ("HTTPConnection", "etcd2.example", 2379, 1.5)}
    assert etcd.Client([A])._connection_to(A).timeout == etcd.TIMEOUT


def test_a_key_created_without_a_lease_is_bound_to_none() -> None:
    client = Gateway(Etcd()).client([A], etcd.Credentials(Etcd.USER, Etcd.PASSWORD))
    won, since = client.create("/c/k", "v")
    assert won
    assert client.get("/c/k") == etcd.KeyValue("/c/k", b"v", since, since, 0)
