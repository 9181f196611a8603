"""sandbox/server.py, the emulators' one server library: routing (404 / 405), the state of
the current request, fault injection and webhook retries, over real HTTP."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sandbox.mercadopago import start_in_thread
from sandbox.server import (BackgroundServer, FaultQueue, Routes, apply_fault, json_response, make_app, parse_fault,
                            post_with_retries, state_proxy)

routes = Routes()
counter = state_proxy()


class Counter:
    def __init__(self):
        self.hits: dict[str, int] = {}
        self.faults = FaultQueue()


@routes.before_request
def injected():
    return apply_fault(counter.faults.take(), lambda status: json_response({"injected": status}, status))


@routes.get("/items/<name>")
def get_item(name):
    counter.hits[name] = counter.hits.get(name, 0) + 1
    return {"name": name, "hits": counter.hits[name]}


@routes.errorhandler(LookupError)
def not_found(exc):
    return json_response({"error": str(exc)}, 404)


@routes.get("/missing")
def missing():
    raise LookupError("nothing here")


@pytest.fixture
def server():
    srv = BackgroundServer(make_app("router-test", Counter(), routes), quiet=True)
    yield srv
    srv.stop()


def test_routes_by_method_and_path_with_the_apps_own_state(server):
    assert requests.get(server.url + "/items/a", timeout=5).json() == {"name": "a", "hits": 1}
    assert requests.get(server.url + "/items/a", timeout=5).json()["hits"] == 2
    assert server.state.hits == {"a": 2}
    other = BackgroundServer(make_app("router-test", Counter(), routes), quiet=True)
    try:   # one route table, two apps: each request sees its own app's state
        assert requests.get(other.url + "/items/a", timeout=5).json()["hits"] == 1
    finally:
        other.stop()


def test_unknown_path_is_404_and_wrong_method_is_405(server):
    assert requests.get(server.url + "/nope", timeout=5).status_code == 404
    r = requests.post(server.url + "/items/a", timeout=5)
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert server.state.hits == {}
    r = requests.get(server.url + "/missing", timeout=5)
    assert (r.status_code, r.json()) == (404, {"error": "nothing here"})   # the table's error handler


def test_fault_queue_answers_5xx_without_acting_then_serves(server):
    server.state.faults.push({"status": 503, "sleep": 0}, count=2)
    assert [requests.get(server.url + "/items/a", timeout=5).status_code for _ in range(3)] == [503, 503, 200]
    assert server.state.hits == {"a": 1}        # the two injected answers did nothing
    server.state.faults.push({"status": 0, "sleep": 0.4})
    started = time.monotonic()
    assert requests.get(server.url + "/items/a", timeout=5).json()["hits"] == 2   # slow, but it acts
    assert time.monotonic() - started >= 0.4


def test_parse_fault_refuses_a_fault_that_does_nothing():
    assert parse_fault({"count": 3, "status": 502}) == {"status": 502, "sleep": 0.0, "count": 3}
    assert parse_fault({"sleep": "1.5"})["sleep"] == 1.5
    for bad in ({"status": 200}, {}, {"status": 404}):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_mercadopago_emulator_answers_404_405_and_faults_in_its_own_shape():
    mp = start_in_thread({"ACCESS_TOKEN": "t"})
    auth = {"Authorization": "Bearer t"}
    try:
        r = requests.get(mp.url + "/v1/nothing-here", headers=auth, timeout=5)
        assert r.status_code == 404 and r.json()["status"] == 404          # JSON, as the SDK needs
        r = requests.delete(mp.url + "/v1/payments/1", headers=auth, timeout=5)
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        assert requests.post(mp.url + "/_sandbox/faults", json={"status": 200}, timeout=5).status_code == 400
        assert requests.post(mp.url + "/_sandbox/faults", json={"count": 2, "status": 502}, timeout=5).ok
        codes = [requests.get(mp.url + "/v1/payments/1", headers=auth, timeout=5).status_code for _ in range(3)]
        assert codes == [502, 502, 404]      # then the real answer: no such payment
        assert requests.get(mp.url + "/_sandbox/state", timeout=5).ok   # controls are never faulted
    finally:
        mp.shutdown()


class _Flaky(BaseHTTPRequestHandler):
    answers = [500, 502, 204]
    seen: list[str] = []

    def do_POST(self):  # noqa: N802 (http.server's hook name)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).seen.append(body)
        self.send_response(type(self).answers[len(type(self).seen) - 1])
        self.end_headers()

    def log_message(self, *args):
        pass


def test_post_with_retries_until_a_2xx():
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    attempts = []
    try:
        post_with_retries(f"http://127.0.0.1:{receiver.server_port}/hook", '{"n": 1}',
                          lambda: {"Content-Type": "application/json", "x-try": str(len(attempts))},
                          (0.01, 0.01, 0.01), 5, lambda record, ok, last: attempts.append((record["status_code"],
                                                                                           ok, last)))
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert attempts == [(500, False, False), (502, False, False), (204, True, True)]
    assert _Flaky.seen == ['{"n": 1}'] * 3
