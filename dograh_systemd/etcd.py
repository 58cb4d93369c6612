"""etcd, through its v3 JSON gateway: the cluster's state, leases and elections.

The gateway answers on every member's client port (Debian 12's etcd 3.4 and
13's 3.5 alike): POST /v3/kv/range, put, txn, deleterange, /v3/lease/grant,
keepalive, revoke, /v3/watch and /v3/auth/authenticate, keys and values in
base64. That is what Patroni's etcd3 backend speaks, and it needs nothing but
the standard library: one HTTPS connection, kept open, to the first member that
answers, the next one when it stops answering. Every reply is read to a bound
(a member, or anything that took its address, cannot grow this process), and
every failure is one ``Unavailable`` line.

Users with passwords and roles are etcd's RBAC: each host has one that may write
its own keys only (the gateway cannot authenticate by a TLS client certificate).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The largest reply read: a cluster's whole state is a few hundred kilobytes.
LIMIT = 4 << 20
# Seconds to reach a member and to hear from it; a watch that has been quiet this long
# is opened again (a member powered off sends nothing, not even a reset).
TIMEOUT = 2.0
WATCH_QUIET = 30.0


class Unavailable(RuntimeError):
    """No member answered, or the cluster refused: the message says why, in one line."""


class Refused(Unavailable):
    """A member answered and refused the request (permission, a lease not found, ...)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class Event:
    kind: str  # "PUT" or "DELETE"
    key: str
    value: bytes
    mod_revision: int


def b64(text: str) -> str:
    """A key or value as the gateway takes it."""
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The end of the range of keys that start with ``prefix``: its last byte plus one."""
    data = prefix.encode()
    return (data[:-1] + bytes([data[-1] + 1])).decode()


def _kv(data: dict[str, Any]) -> KeyValue:
    return KeyValue(_unb64(data["key"]).decode(), _unb64(data.get("value", "")),
                    int(data.get("create_revision", 0)), int(data.get("mod_revision", 0)),
                    int(data.get("lease", 0)))


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


class Client:
    """One client of a cluster: its members' client URLs, the CA that signed them, and a
    user of its RBAC (None: a cluster without auth)."""

    def __init__(self, endpoints: Sequence[str], ca: Path | None = None,
                 credentials: Credentials | None = None, timeout: float = TIMEOUT) -> None:
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.credentials = credentials
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca)) if ca else None
        self._connection: http.client.HTTPConnection | None = None
        self._current = 0
        self._token: str | None = None
        self._lock = threading.Lock()
        # A monotonic time no call may run past (an agent's lease deadline), or None.
        self.deadline: float | None = None

    # -- the key space ------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        found, _ = self.range(key)
        return found[0] if found else None

    def range(self, key: str, prefix: bool = False) -> tuple[list[KeyValue], int]:
        """The keys ``key`` (or every key under it), and the revision they were read at."""
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        reply = self.call("/v3/kv/range", body)
        return [_kv(kv) for kv in reply.get("kvs", [])], int(reply["header"]["revision"])

    def put(self, key: str, value: str, lease: int = 0) -> int:
        """Write ``key``; the revision of the write."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str, prefix: bool = False) -> int:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        return int(self.call("/v3/kv/deleterange", body)["header"]["revision"])

    def create(self, key: str, value: str, lease: int = 0) -> tuple[bool, int]:
        """Write ``key`` only if it does not exist (one transaction): whether it was
        written, and its create revision (the new one, or the one it has)."""
        put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            put["lease"] = str(lease)
        reply = self.call("/v3/kv/txn", {
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": put}],
            "failure": [{"request_range": {"key": b64(key)}}]})
        if reply.get("succeeded"):
            return True, int(reply["header"]["revision"])
        kvs = reply["responses"][0]["response_range"].get("kvs", [])
        return False, _kv(kvs[0]).create_revision if kvs else 0

    def replace(self, key: str, value: str, mod_revision: int, lease: int = 0) -> bool:
        """Write ``key`` only if it was last written at ``mod_revision`` (0: absent)."""
        put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            put["lease"] = str(lease)
        target = ({"target": "MOD", "mod_revision": str(mod_revision)} if mod_revision
                  else {"target": "CREATE", "create_revision": "0"})
        reply = self.call("/v3/kv/txn", {
            "compare": [{"key": b64(key), "result": "EQUAL", **target}],
            "success": [{"request_put": put}]})
        return bool(reply.get("succeeded"))

    def delete_if_held(self, key: str, lease: int) -> bool:
        """Delete ``key`` only while it is bound to ``lease`` (a leader stepping down)."""
        reply = self.call("/v3/kv/txn", {
            "compare": [{"key": b64(key), "target": "LEASE", "result": "EQUAL",
                         "lease": str(lease)}],
            "success": [{"request_delete_range": {"key": b64(key)}}]})
        return bool(reply.get("succeeded"))

    # -- leases ---------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        return int(self.call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease``; the TTL it has again, 0 when it is gone."""
        reply = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", reply).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        self.call("/v3/lease/revoke", {"ID": str(lease)})

    # -- watching -------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> Iterator[list[Event]]:
        """The changes under ``prefix`` from ``start_revision`` on, a batch at a time, for
        as long as the member keeps the stream open (on a connection of its own)."""
        connection, token = self._open_stream()
        body = {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        headers = {"Content-Type": "application/json", **({"Authorization": token}
                                                           if token else {})}
        try:
            connection.request("POST", "/v3/watch", json.dumps(body), headers)
            response = connection.getresponse()
            if response.status != 200:
                raise Unavailable(f"watch refused: HTTP {response.status}")
            if connection.sock is not None:
                connection.sock.settimeout(WATCH_QUIET)
            while True:
                line = response.readline(LIMIT + 1)
                if not line or len(line) > LIMIT:
                    return
                result = json.loads(line).get("result", {})
                if result.get("canceled"):
                    return
                yield [Event(event.get("type", "PUT"), _unb64(event["kv"]["key"]).decode(),
                             _unb64(event["kv"].get("value", "")),
                             int(event["kv"].get("mod_revision", 0)))
                       for event in result.get("events", [])]
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise Unavailable(f"the watch ended: {exc}") from None
        finally:
            connection.close()

    # -- the wire -------------------------------------------------------------------------

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the member in use, or the next that answers."""
        with self._lock:
            failures = []
            for _ in range(len(self.endpoints)):
                left = self._time_left()
                if left <= 0:
                    failures.append("out of time")
                    break
                try:
                    if self._connection is not None and self._connection.sock is not None:
                        self._connection.sock.settimeout(left)
                    return self._call(path, body)
                except Refused:
                    raise
                except (OSError, http.client.HTTPException, Unavailable) as exc:
                    failures.append(f"{self.endpoints[self._current]}: {exc}")
                    self._drop()
                    self._current = (self._current + 1) % len(self.endpoints)
            raise Unavailable("no etcd member answers (" + "; ".join(failures) + ")")

    def _call(self, path: str, body: dict[str, Any], retried: bool = False) -> dict[str, Any]:
        if self.credentials and self._token is None and path != "/v3/auth/authenticate":
            self._token = self._call("/v3/auth/authenticate", {
                "name": self.credentials.user, "password": self.credentials.password})["token"]
        connection = self._connect()
        headers = {"Content-Type": "application/json"}
        if self._token and path != "/v3/auth/authenticate":
            headers["Authorization"] = self._token
        connection.request("POST", path, json.dumps(body), headers)
        response = connection.getresponse()
        raw = response.read(LIMIT + 1)
        if len(raw) > LIMIT:
            self._drop()
            raise Unavailable(f"a reply larger than {LIMIT >> 20} MiB")
        try:
            reply = json.loads(raw) if raw else {}
        except ValueError:
            raise Unavailable(f"HTTP {response.status}, not JSON") from None
        if not isinstance(reply, dict):
            raise Unavailable(f"HTTP {response.status}, not a JSON object")
        if response.status == 200 and "code" not in reply and "error" not in reply:
            return reply
        # 3.4 says {"error", "message", "code"}, 3.5 {"message", "code"}; a keepalive
        # without a leader {"error": {"grpc_code", "message", ...}}.
        error = reply.get("error")
        if isinstance(error, dict):
            message, code = str(error.get("message", "")), int(error.get("grpc_code", 0))
        else:
            message, code = str(reply.get("message") or error or ""), int(reply.get("code", 0))
        message = message or f"HTTP {response.status}"
        if ("token" in message or "auth store" in message) and not retried \
                and self.credentials:
            # It expired, or the auth store changed since (a user added): log in again.
            self._token = None
            return self._call(path, body, retried=True)
        # Unavailable, a deadline, no leader, a server error: another member may answer.
        if code in (2, 4, 14) or response.status >= 500:
            raise Unavailable(message)
        raise Refused(message, code)

    def _time_left(self) -> float:
        if self.deadline is None:
            return self.timeout
        return min(self.timeout, self.deadline - time.monotonic())

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = self._connection_to(self.endpoints[self._current])
            self._connection.timeout = max(0.05, self._time_left())
        return self._connection

    def _connection_to(self, endpoint: str) -> http.client.HTTPConnection:
        url = urlsplit(endpoint)
        if url.scheme == "https":
            return http.client.HTTPSConnection(url.hostname or "", url.port or 2379,
                                               timeout=self.timeout, context=self._context)
        return http.client.HTTPConnection(url.hostname or "", url.port or 2379,
                                          timeout=self.timeout)

    def _open_stream(self) -> tuple[http.client.HTTPConnection, str | None]:
        """A connection for a watch (which holds it for as long as it lasts), and the
        token to send on it. Not logged in yet, it logs in first, on the member that
        answers (a login, not a read: a host's role may read its cluster's keys only)."""
        if self.credentials and self._token is None:
            token = self.call("/v3/auth/authenticate", {
                "name": self.credentials.user, "password": self.credentials.password})["token"]
            with self._lock:
                self._token = token
        with self._lock:
            return self._connection_to(self.endpoints[self._current]), self._token

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        with self._lock:
            self._drop()
