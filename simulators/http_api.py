"""A small JSON-over-HTTP client for the Liftwatch API, standard library only.

The technicians' simulator talks to the public API exactly as a phone or a script would:
OAuth2 password login, bearer tokens, JSON bodies, and the API's error bodies
(`{"error": code, "detail": text, "field"?}`) turned into `ApiCallError` with that code.
One persistent HTTP/1.1 connection per client (http.client), so a visit's hundred calls do
not each pay a TCP handshake; a connection idle longer than the server's keep-alive is
reopened before use.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

# uvicorn closes an idle keep-alive connection after 5 s; reopen before that rather than
# discover it with a failed request
IDLE_REOPEN_S = 4.0


class ApiCallError(Exception):
    """An API call that did not succeed: HTTP status and the API's error code (or a transport one)."""

    def __init__(self, method: str, path: str, status: int, code: str, detail: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {code}: {detail}")
        self.method = method
        self.path = path
        self.status = status  # 0: no HTTP response (connection refused, reset, timeout)
        self.code = code
        self.detail = detail

    def as_json(self) -> dict[str, Any]:
        return {"call": f"{self.method} {self.path}", "status": self.status, "code": self.code,
                "detail": self.detail[:500]}


@dataclass
class CallStats:
    calls: int = 0
    seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)


class ApiClient:
    """One connection to the API; not thread-safe (one per thread)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, stats: CallStats | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"API URL must be http(s)://host[:port], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.stats = stats or CallStats()
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The open connection (reopened when idle too long) and whether it is a reused one."""
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_REOPEN_S:
            self.close()
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
            return self._conn, False
        return self._conn, True

    def request(self, method: str, path: str, *, token: str | None = None, json_body: Any = None,
                form: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> Any:
        """Send one request; return the decoded JSON body of a 2xx answer, else raise ApiCallError."""
        url = self.prefix + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Accept": "application/json", "User-Agent": "liftwatch-simulate-technicians"}
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        t0 = time.perf_counter()
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.request(method, url, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                # a kept-alive connection the server had just closed: retry once on a fresh one
                if attempt == 1 and reused:
                    continue
                raise ApiCallError(method, path, 0, "connection_error", str(exc) or type(exc).__name__) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                code = "timeout" if isinstance(exc, socket.timeout | TimeoutError) else "connection_error"
                raise ApiCallError(method, path, 0, code, str(exc) or type(exc).__name__) from None
        self._last_used = time.monotonic()
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - t0
        self.stats.by_status[resp.status] = self.stats.by_status.get(resp.status, 0) + 1
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        if 200 <= resp.status < 300:
            return doc
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            raise ApiCallError(method, path, resp.status, doc["error"], str(doc.get("detail", "")))
        raise ApiCallError(method, path, resp.status, f"http_{resp.status}", data[:300].decode("utf-8", "replace"))


class Session:
    """A logged-in account: logs in on first use, again before its token expires or after a 401."""

    def __init__(self, client: ApiClient, username: str, password: str) -> None:
        self.client = client
        self.username = username
        self.password = password
        self._token: str | None = None
        self._expires = 0.0
        self.logins = 0

    def login(self) -> None:
        doc = self.client.request("POST", "/api/v1/auth/token",
                                  form={"username": self.username, "password": self.password})
        self._token = doc["access_token"]
        # renew a minute early: a visit's calls should never straddle the expiry
        self._expires = time.monotonic() + max(30.0, float(doc.get("expires_in", 900)) - 60.0)
        self.logins += 1

    def call(self, method: str, path: str, **kw: Any) -> Any:
        if self._token is None or time.monotonic() >= self._expires:
            self.login()
        try:
            return self.client.request(method, path, token=self._token, **kw)
        except ApiCallError as exc:
            if exc.status != 401 or exc.code != "not_authenticated":
                raise
        self.login()  # token revoked or the server's secret rotated: once more, freshly logged in
        return self.client.request(method, path, token=self._token, **kw)

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, json_body=body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, json_body=body)
