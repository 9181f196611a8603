"""The one server library of the emulators in sandbox/: Flask's routing on werkzeug's
threaded server, plus the few things every emulator needs on top of it.

- `Routes`: a route table that an emulator module fills at import time with small
  module-level functions (`@routes.get("/v1/payments/<pid>")`), error handlers and
  request hooks; `make_app()` puts it on a fresh Flask app with the emulator's state.
  Endpoints keep the function's name, so `url_for("sandbox_pay")` works in pages.
  An unknown path answers 404, a known path with another method 405 (Flask's router),
  rendered by the emulator's own HTTPException handler in the provider's error shape.
- `state_proxy()`: the emulator's state for the current request (like Flask's `g`), so
  route functions need no closure over it; background threads use the object itself.
- `control_body()`: a sandbox control's parameters, from JSON or from an HTML form.
- `FaultQueue`: queued behaviours consumed one call at a time (injected 5xx answers,
  slow answers, order/withdraw modes): tests and bench/chaos.py push them via /_sandbox/.
- `post_with_retries()`: a webhook delivery, retried after each interval until a 2xx.
- `tls_server_context()`: HTTPS with a required client certificate (Banco Inter's mTLS).
- `BackgroundServer` (tests: a real socket in a daemon thread) and `serve()` (the CLIs).
"""
from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Callable

import requests
from flask import Flask, Response, current_app, request
from werkzeug.local import LocalProxy
from werkzeug.serving import WSGIRequestHandler, make_server

STATE_KEY = "sandbox_state"


class Routes:
    """Routes (method + path pattern), error handlers and hooks, installed on an app later."""

    def __init__(self):
        self.rules: list[tuple[str, tuple[str, ...], Callable]] = []
        self.error_handlers: list[tuple[type, Callable]] = []
        self.before: list[Callable] = []
        self.after: list[Callable] = []

    def route(self, rule: str, methods: tuple[str, ...] | list[str]):
        def register(fn):
            self.rules.append((rule, tuple(methods), fn))
            return fn
        return register

    def get(self, rule: str):
        return self.route(rule, ("GET",))

    def post(self, rule: str):
        return self.route(rule, ("POST",))

    def put(self, rule: str):
        return self.route(rule, ("PUT",))

    def patch(self, rule: str):
        return self.route(rule, ("PATCH",))

    def errorhandler(self, exc: type):
        def register(fn):
            self.error_handlers.append((exc, fn))
            return fn
        return register

    def before_request(self, fn):
        self.before.append(fn)
        return fn

    def after_request(self, fn):
        self.after.append(fn)
        return fn

    def install(self, app: Flask) -> None:
        for rule, methods, fn in self.rules:
            app.add_url_rule(rule, endpoint=fn.__name__, view_func=fn, methods=list(methods))
        for exc, fn in self.error_handlers:
            app.register_error_handler(exc, fn)
        for fn in self.before:
            app.before_request(fn)
        for fn in self.after:
            app.after_request(fn)


def make_app(import_name: str, state, *route_tables: Routes, extension: str | None = None) -> Flask:
    """A Flask app serving `route_tables`, with `state` reachable from every request."""
    app = Flask(import_name)
    app.json.sort_keys = False
    app.extensions[STATE_KEY] = state
    if extension:
        app.extensions[extension] = state
    for table in route_tables:
        table.install(app)
    return app


def state_proxy() -> LocalProxy:
    """The current app's emulator state; use it inside requests only."""
    return LocalProxy(lambda: current_app.extensions[STATE_KEY])


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(obj), status=status, headers=headers, mimetype="application/json")


def control_body() -> dict:
    """A /_sandbox/ control's parameters: the JSON object, or the non-empty form fields."""
    if request.is_json:
        body = request.get_json(silent=True)
        return body if isinstance(body, dict) else {}
    return {k: v for k, v in request.form.items() if v != ""}


def from_form() -> bool:
    """Whether a person sent this from a control page (then answer with a page, not JSON)."""
    return bool(request.form) and not request.is_json


class FaultQueue:
    """Behaviours queued for the next calls: each entry serves `remaining` calls, in order."""

    def __init__(self, lock=None):
        self.lock = lock or threading.RLock()
        self.entries: list[dict] = []

    def push(self, entry: dict, count: int = 1) -> dict:
        entry = dict(entry, remaining=max(1, int(count)))
        with self.lock:
            self.entries.append(entry)
        return dict(entry)

    def peek(self) -> dict | None:
        with self.lock:
            return dict(self.entries[0]) if self.entries else None

    def take(self) -> dict | None:
        """Consume one use of the first entry; None when nothing is queued."""
        with self.lock:
            if not self.entries:
                return None
            entry = self.entries[0]
            entry["remaining"] -= 1
            if entry["remaining"] <= 0:
                self.entries.pop(0)
            return dict(entry)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()

    def __iter__(self):
        with self.lock:
            return iter([dict(e) for e in self.entries])


def parse_fault(params: dict) -> dict:
    """{count, status?: 5xx, sleep?: s} → a fault entry; ValueError when it would do nothing."""
    status, sleep = int(params.get("status") or 0), float(params.get("sleep") or 0)
    if not sleep and not 500 <= status <= 599:
        raise ValueError("a fault needs status 5xx or sleep > 0")
    return {"status": status, "sleep": sleep, "count": max(1, int(params.get("count", 1)))}


def apply_fault(fault: dict | None, render: Callable[[int], Response]) -> Response | None:
    """A taken fault: sleep (then let the call act), or answer `render(status)` without acting."""
    if fault is None:
        return None
    if fault.get("sleep"):
        time.sleep(float(fault["sleep"]))
        return None
    return render(int(fault.get("status") or 503))


def post_with_retries(url: str, data: str, headers: Callable[[], dict], intervals, timeout: float,
                      on_attempt: Callable[[dict, bool, bool], None]) -> None:
    """POST `data` to `url`, again after each interval, until a 2xx or the intervals run out.

    `headers()` is called per attempt (fresh ids, signatures); `on_attempt(record, ok, last)`
    stores each attempt (`last`: no retry follows)."""
    intervals = list(intervals)
    for attempt in range(len(intervals) + 1):
        record = {"status_code": None, "error": None, "headers": headers()}
        try:
            r = requests.post(url, data=data, headers=record["headers"], timeout=float(timeout))
            record["status_code"] = r.status_code
            ok = 200 <= r.status_code < 300
        except requests.RequestException as exc:
            record["error"] = f"{exc.__class__.__name__}: {exc}"[:300]
            ok = False
        last = ok or attempt == len(intervals)
        on_attempt(record, ok, last)
        if last:
            return
        time.sleep(float(intervals[attempt]))


def tls_server_context(cert_file: str, key_file: str, client_ca: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context; with `client_ca`, a client certificate signed by it is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # tests: no access log noise
        pass


class BackgroundServer:
    """An app on a real socket, served by a daemon thread (tests, dev tooling). Running once built."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, quiet: bool = False):
        self.app = app
        self.server = make_server(host, port, app, threaded=True, ssl_context=ssl_context,
                                  request_handler=QuietRequestHandler if quiet else None)
        self.port = self.server.server_port
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name=f"{app.import_name}-{self.port}")
        self.thread.start()

    @property
    def state(self):
        return self.app.extensions[STATE_KEY]

    def start(self) -> "BackgroundServer":
        return self     # already serving; kept so `Server(...).start()` reads naturally

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    shutdown = stop


def serve(app: Flask, host: str, port: int, banner: str, ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve in the foreground until Ctrl-C (the emulators' `python -m` entry points)."""
    server = make_server(host, port, app, threaded=True, ssl_context=ssl_context)
    print(banner, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
