"""A local SMTP sink for development and tests, with an inbox page.

An aiosmtpd server accepts every message (no relay anywhere) and keeps it:
in memory, and as `.eml` files in `--state-dir` when given, so a restarted
`make run` still shows the mails. An HTTP page lists them, the way the
Mercado Pago sandbox page lists charges:

  GET /_sandbox/mail                 HTML: every message, newest first
  GET /_sandbox/mail/<n>             HTML: one message, its links clickable
  GET /_sandbox/mail/<n>.eml         the raw message
  GET /_sandbox/mail/messages.json   every message as JSON (to, subject, message_id, text)
  POST /_sandbox/mail/clear          forget every message

Run: `python -m sandbox.mail --smtp-port 1025 --port 8004 --state-dir .local/mail`;
in tests use `MailSink(smtp_port=0).start()` and `sink.messages()` / `sink.wait_for(…)`.
"""
from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from flask import Flask, Response, abort, redirect, render_template_string
from markupsafe import Markup, escape

from sandbox.server import BackgroundServer, Routes, make_app, serve, state_proxy

URL = re.compile(r"https?://[^\s<>\"']+")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, sink: "MailSink"):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.sink.store(envelope.original_content or envelope.content, envelope.rcpt_tos)
        return "250 Message accepted for delivery"


class MailSink:
    """The SMTP server (aiosmtpd, in its own thread) and what it received."""

    def __init__(self, host: str = "127.0.0.1", smtp_port: int = 0, state_dir: str | Path | None = None):
        self.host = host
        self.smtp_port = smtp_port or _free_port()
        self.state_dir = Path(state_dir) if state_dir else None
        self._lock = threading.Lock()
        self._raw: list[bytes] = []
        if self.state_dir:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._raw = [p.read_bytes() for p in sorted(self.state_dir.glob("*.eml"))]
        self.controller = Controller(_Handler(self), hostname=host, port=self.smtp_port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.smtp_port}"

    def start(self) -> "MailSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def store(self, raw: bytes, recipients) -> None:
        with self._lock:
            self._raw.append(raw)
            if self.state_dir:
                (self.state_dir / f"{len(self._raw):06d}.eml").write_bytes(raw)

    def clear(self) -> None:
        with self._lock:
            self._raw.clear()
            if self.state_dir:
                for path in self.state_dir.glob("*.eml"):
                    path.unlink()

    def raw(self, index: int) -> bytes:
        with self._lock:
            return self._raw[index]

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            raws = list(self._raw)
        return [message_from_bytes(raw, policy=policy.default) for raw in raws]

    def wait_for(self, predicate, timeout: float = 15.0) -> EmailMessage:
        """The first message (oldest first) for which predicate(msg) is true, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages():
                if predicate(msg):
                    return msg
            if time.monotonic() > deadline:
                raise AssertionError(f"no such e-mail within {timeout}s; got: {[m['Subject'] for m in self.messages()]}")
            time.sleep(0.05)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def links_of(msg: EmailMessage) -> list[str]:
    return URL.findall(text_of(msg))


INBOX = """<!doctype html><html lang="pt-BR"><head><meta charset="utf-8"><title>Caixa de entrada · sandbox</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;background:#f6f7f9;color:#222}
table{border-collapse:collapse;width:100%;background:#fff}td,th{padding:.5rem .75rem;border-bottom:1px solid #e3e5e8;text-align:left}
th{background:#212529;color:#fff}a{color:#0a58ca}.muted{color:#6c757d;font-size:.9em}
pre{background:#fff;padding:1rem;border:1px solid #e3e5e8;white-space:pre-wrap;font-size:1rem;line-height:1.5}
.top{display:flex;gap:1rem;align-items:center}.badge{background:#ffc107;border-radius:.5rem;padding:.1rem .5rem;font-size:.8em}
button{padding:.3rem .8rem}</style></head><body>
<div class="top"><h1>Caixa de entrada <span class="badge">sandbox</span></h1>
<form method="post" action="/_sandbox/mail/clear"><button>Apagar tudo</button></form></div>
<p class="muted">Todo e-mail que a bs-market envia em modo sandbox chega aqui (SMTP {{ smtp }}); nada sai desta máquina.
Clique num e-mail para lê-lo e seguir os links.</p>
<table data-testid="inbox"><tr><th>#</th><th>Para</th><th>Assunto</th><th>Data</th></tr>
{% for i, m in rows %}<tr><td>{{ i }}</td><td>{{ m['To'] }}</td><td><a href="/_sandbox/mail/{{ i }}">{{ m['Subject'] }}</a></td>
<td class="muted">{{ m['Date'] }}</td></tr>{% else %}<tr><td colspan="4" class="muted">Nenhum e-mail ainda.</td></tr>{% endfor %}
</table></body></html>"""

MESSAGE = """<!doctype html><html lang="pt-BR"><head><meta charset="utf-8"><title>{{ m['Subject'] }} · sandbox</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;background:#f6f7f9;color:#222;max-width:60rem}
pre{background:#fff;padding:1rem;border:1px solid #e3e5e8;white-space:pre-wrap;font-size:1rem;line-height:1.5}
dt{font-weight:600}dd{margin:0 0 .3rem 0}.muted{color:#6c757d}</style></head><body>
<p><a href="/_sandbox/mail">← Caixa de entrada</a> · <a href="/_sandbox/mail/{{ i }}.eml">original (.eml)</a></p>
<h1>{{ m['Subject'] }}</h1>
<dl><dt>De</dt><dd>{{ m['From'] }}</dd><dt>Para</dt><dd>{{ m['To'] }}</dd><dt>Data</dt><dd>{{ m['Date'] }}</dd>
<dt>Message-ID</dt><dd class="muted">{{ m['Message-ID'] }}</dd></dl>
<pre data-testid="mail-body">{{ body }}</pre></body></html>"""


def _linkify(text: str) -> Markup:
    out, last = [], 0
    for match in URL.finditer(text):
        out.append(escape(text[last:match.start()]))
        url = match.group(0)
        out.append(Markup('<a href="{0}">{0}</a>').format(url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


# --------------------------------------------------------------------------- routes
# Small functions on the shared server library (sandbox/server.py); `sink` is this
# request's MailSink.

routes = Routes()
sink: MailSink = state_proxy()


@routes.get("/")
def root():
    return redirect("/_sandbox/mail")


@routes.get("/_sandbox/mail")
def inbox():
    rows = list(reversed(list(enumerate(sink.messages()))))
    return render_template_string(INBOX, rows=rows, smtp=sink.url)


@routes.get("/_sandbox/mail/messages.json")
def as_json():
    return [{"index": i, "to": m["To"], "subject": m["Subject"], "message_id": m["Message-ID"], "text": text_of(m)}
            for i, m in enumerate(sink.messages())]


@routes.get("/_sandbox/mail/<int:index>")
def message(index: int):
    messages = sink.messages()
    if index >= len(messages):
        abort(404)
    return render_template_string(MESSAGE, m=messages[index], i=index, body=_linkify(text_of(messages[index])))


@routes.get("/_sandbox/mail/<int:index>.eml")
def original(index: int):
    try:
        return Response(sink.raw(index), mimetype="message/rfc822")
    except IndexError:
        abort(404)


@routes.post("/_sandbox/mail/clear")
def clear():
    sink.clear()
    return redirect("/_sandbox/mail")


def create_inbox_app(mail_sink: MailSink) -> Flask:
    return make_app("bs-market-mail-sandbox", mail_sink, routes)


class InboxServer(BackgroundServer):
    """The inbox page on a werkzeug server in a thread (tests)."""

    def __init__(self, mail_sink: MailSink, port: int = 0):
        super().__init__(create_inbox_app(mail_sink), "127.0.0.1", port)
        self.url += "/_sandbox/mail"

    close = BackgroundServer.stop


def main() -> None:
    parser = argparse.ArgumentParser(description="bs-market SMTP sink with an inbox page (sandbox)")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--port", type=int, default=8004, help="HTTP port of the inbox page")
    parser.add_argument("--state-dir", default=None, help="keep the messages as .eml files here")
    args = parser.parse_args()
    mail_sink = MailSink(smtp_port=args.smtp_port, state_dir=args.state_dir).start()
    try:
        serve(create_inbox_app(mail_sink), "127.0.0.1", args.port,
              json.dumps({"smtp": mail_sink.url, "inbox": f"http://127.0.0.1:{args.port}/_sandbox/mail"}))
    finally:
        mail_sink.stop()


if __name__ == "__main__":
    main()
