"""The wire: clearml-server's request and response envelope, its authentication, and the file
server, over the standard library's HTTP server on 127.0.0.1.

What a real server does, and where this follows it (allegroai/clearml-server, v2.0.0):

- ``POST /v<version>/<service>.<action>`` (or without the version) with a JSON body; the answer is
  ``{"meta": {id, trx, endpoint, result_code, result_subcode, result_msg, ...}, "data": ...}``
  (``apiserver/service_repo/apicall.py`` ``APICall.get_response``).
- ``auth.login`` with HTTP basic credentials returns a JWT whose claims carry the identity, the
  ``api_version`` (the highest endpoint version, 2.31), ``server_version`` and ``feature_set``
  (``apiserver/bll/auth/__init__.py`` ``get_token_for_user``,
  ``apiserver/service_repo/auth/payload/token.py``); every other call carries it as a bearer token
  and is refused with 401 without a valid one (``apiserver/service_repo/auth/auth.py``).
- Errors are ``result_code``/``result_subcode`` pairs from ``apiserver/apierrors/errors.conf``
  (e.g. 400/101 "invalid task id").
- The file server (``fileserver/fileserver.py``): ``POST /`` with multipart fields named by
  their target path, ``GET /<path>`` to download, ``DELETE /<path>``.

An endpoint this double does not implement is answered 400 "not implemented by the test double:
<name>" and recorded, so a new SDK call fails a test instead of passing silently.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

API_VERSION = "2.31"  # ServiceRepo._max_version in apiserver/service_repo/service_repo.py
SERVER_VERSION = "2.0.0"  # apiserver/version.py


class ApiError(Exception):
    """An error answer: HTTP/result code, subcode and message as errors.conf names them."""

    def __init__(self, code: int, subcode: int, msg: str, **data: Any) -> None:
        super().__init__(msg)
        self.code, self.subcode, self.msg, self.data = code, subcode, msg, data


def bad_request(subcode: int, msg: str, **data: Any) -> ApiError:
    return ApiError(400, subcode, msg, **data)


@dataclass
class Call:
    """One request as a handler sees it."""

    endpoint: str
    data: dict[str, Any]
    user: str
    worker: str | None


Handler = Callable[[Call], Any]


@dataclass
class Logged:
    """A request in the server's log: when, which endpoint, what was sent, how it ended."""

    endpoint: str
    data: Any
    code: int
    msg: str
    at: float = field(default_factory=time.time)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """HS256 JWTs as the server issues them (claims as ``Token.create_encoded_token``)."""

    def __init__(self) -> None:
        self.secret = uuid.uuid4().bytes

    def issue(self, user: str, expiration_sec: int = 30 * 24 * 3600) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "identity": {"user": user, "company": "sst-test", "role": "user"},
            "env": "<unknown>",
            "api_version": API_VERSION,
            "server_version": SERVER_VERSION,
            "server_build": "test-double",
            "feature_set": "basic",
            "exp": int(time.time()) + expiration_sec,
            "iat": int(time.time()),
        }
        payload = _b64(json.dumps(claims).encode())
        mac = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(mac)}"

    def user_of(self, token: str) -> str | None:
        try:
            header, payload, mac = token.split(".")
        except ValueError:
            return None
        want = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_unb64(mac), want):
            return None
        claims = json.loads(_unb64(payload))
        if claims.get("exp", 0) < time.time():
            return None
        return str(claims["identity"]["user"])


class ApiServer:
    """The API server (and, on a second port, the file server) in a background thread."""

    def __init__(self, handlers: dict[str, Handler], credentials: dict[str, str], files: Path):
        self.handlers = {"auth.login": self._login, "debug.ping": self._ping, **handlers}
        self.credentials = credentials  # access key -> secret key
        self.files = files
        self.tokens = Tokens()
        self.log: list[Logged] = []
        self.lock = threading.RLock()  # one request at a time changes the state
        self._servers: list[ThreadingHTTPServer] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> ApiServer:
        self.files.mkdir(parents=True, exist_ok=True)
        for handler in (self._api_handler(), self._file_handler()):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def files_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def endpoints(self) -> list[str]:
        """Every endpoint called so far, in order of first call."""
        return list(dict.fromkeys(entry.endpoint for entry in self.log))

    def unimplemented(self) -> list[str]:
        return sorted({e.endpoint for e in self.log if e.msg.startswith(UNIMPLEMENTED)})

    # -- the API ----------------------------------------------------------------------------

    def answer(self, endpoint: str, data: Any, auth: str | None, worker: str | None) -> tuple:
        """(HTTP status, envelope) for one call."""
        meta: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "trx": uuid.uuid4().hex,
            "endpoint": {"name": endpoint, "requested_version": API_VERSION},
            "error_stack": None,
            "error_data": {},
        }
        result: Any = None
        try:
            user = self._authenticate(endpoint, auth)
            handler = self.handlers.get(endpoint)
            if handler is None:
                raise bad_request(1, f"{UNIMPLEMENTED}: {endpoint}")
            if not isinstance(data, dict):
                raise bad_request(12, "validation error: the request body is not a JSON object")
            with self.lock:
                result = handler(Call(endpoint, data, user, worker))
            code, subcode, msg = 200, 0, "OK"
        except ApiError as e:
            code, subcode, msg, meta["error_data"] = e.code, e.subcode, e.msg, e.data
        meta |= {"result_code": code, "result_subcode": subcode, "result_msg": msg}
        meta["endpoint"]["actual_version"] = "1.0"
        with self.lock:
            self.log.append(Logged(endpoint, data, code, msg))
        return code, {"meta": meta, "data": result if result is not None else {}}

    def _login(self, call: Call) -> dict[str, Any]:
        """auth.login (apiserver/services/auth.py): a token for the authenticated key."""
        expiration = int(call.data.get("expiration_sec") or 30 * 24 * 3600)
        return {"token": self.tokens.issue(call.user, expiration)}

    @staticmethod
    def _ping(call: Call) -> dict[str, Any]:
        """debug.ping (apiserver/services/debug.py; ``authorize: false`` in debug.conf)."""
        return {"msg": "ClearML server", **call.data}

    def _authenticate(self, endpoint: str, auth: str | None) -> str:
        scheme, _, value = (auth or "").partition(" ")
        if endpoint in UNAUTHORIZED:
            return ""
        if endpoint == "auth.login" and scheme.lower() == "basic":
            key, _, secret = base64.b64decode(value).decode().partition(":")
            if self.credentials.get(key) != secret or not key:
                # apiserver/service_repo/auth/auth.py: unknown key or a wrong secret
                raise ApiError(401, 22, "Unauthorized (invalid credentials)")
            return key
        if scheme.lower() == "bearer" and (user := self.tokens.user_of(value)):
            return user
        if not auth:
            raise ApiError(401, 20, "Unauthorized (missing credentials)")
        raise ApiError(401, 30, "Invalid token")

    def _api_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Api(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # the request log is the server's own
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                endpoint = parts.path.rstrip("/").rsplit("/", 1)[-1]
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                data: Any = dict(parse_qsl(parts.query))
                if "json-lines" in (self.headers.get("Content-Type") or ""):
                    data = {"_lines": body.decode()}  # events.add_batch: one event per line
                elif body:
                    try:
                        data = json.loads(body)
                    except ValueError:
                        data = body.decode(errors="replace")
                    if isinstance(data, dict):
                        data |= dict(parse_qsl(parts.query))
                code, envelope = server.answer(
                    endpoint,
                    data,
                    self.headers.get("Authorization"),
                    self.headers.get("X-ClearML-Worker"),
                )
                raw = json.dumps(envelope).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = _handle

        return Api

    # -- the file server --------------------------------------------------------------------

    def _file_handler(self) -> type[BaseHTTPRequestHandler]:
        root = self.files

        class Files(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _target(self) -> Path | None:
                path = unquote(urlsplit(self.path).path).lstrip("/")
                target = (root / path).resolve()
                return target if target.is_relative_to(root.resolve()) else None

            def _reply(self, code: int, raw: bytes, kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # fileserver.py upload(): fields named by their path
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size)
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
                saved = []
                base = unquote(urlsplit(self.path).path).strip("/")
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if not name:
                        continue
                    target = (root / base / str(name).lstrip("/")).resolve()
                    if not target.is_relative_to(root.resolve()):
                        self._reply(404, b"not found")
                        return
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(part.get_payload(decode=True) or b"")
                    saved.append(str(name))
                self._reply(200, json.dumps(saved).encode())

            def do_GET(self) -> None:
                target = self._target()
                if target is None or not target.is_file():
                    self._reply(404, b"not found", "text/plain")
                    return
                self._reply(200, target.read_bytes(), "application/octet-stream")

            def do_DELETE(self) -> None:
                target = self._target()
                if target is None or not target.is_file():
                    self._reply(404, b"not found", "text/plain")
                    return
                target.unlink()
                self._reply(200, b"{}")

        return Files


UNIMPLEMENTED = "not implemented by the test double"
UNAUTHORIZED = {"debug.ping"}  # endpoints whose schema says ``authorize: false``
