"""`make run`: everything a newcomer needs, started by one command.

Starts the private PostgreSQL cluster (unless DATABASE_URL is set), applies
migrations and sql/, seeds the demo data, starts the sandbox emulators when
no provider credentials are set, then gunicorn and the worker. Prints the URL
and the demo logins. Ctrl-C stops everything this command started.
"""
from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time

from .devcluster import PROJECT, Cluster

LOCAL = PROJECT / ".local"


def secret_key() -> str:
    """A SECRET_KEY kept in .local so sessions survive a restart."""
    path = LOCAL / "secret_key"
    if not path.exists():
        LOCAL.mkdir(exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> int:
    env = os.environ.copy()
    python = sys.executable
    cluster = None
    if not env.get("DATABASE_URL"):
        cluster = Cluster()
        print(f"starting PostgreSQL in {cluster.datadir} (port {cluster.port})", flush=True)
        cluster.start()
        cluster.ensure_database()
        env["DATABASE_URL"] = cluster.url()
    env.setdefault("SECRET_KEY", secret_key())
    port = env.setdefault("PORT", "8000")
    env.setdefault("APP_URL", f"http://127.0.0.1:{port}")

    flask = [python, "-m", "flask", "--app", "wsgi"]
    subprocess.run(flask + ["db", "upgrade"], env=env, check=True, cwd=PROJECT)
    subprocess.run(flask + ["seed-demo"], env=env, check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)

    children: list[subprocess.Popen] = []

    def start(name, cmd):
        print(f"starting {name}", flush=True)
        children.append(subprocess.Popen(cmd, env=env, cwd=PROJECT))

    if not env.get("MERCADO_PAGO_ACCESS_TOKEN") and importlib.util.find_spec("webapp.sandbox.mercadopago"):
        start("Mercado Pago sandbox on :8001", [python, "-m", "webapp.sandbox.mercadopago", "--port", "8001",
                                                 "--webhook-secret", "sandbox-webhook-secret"])
    if (env.get("PIX_PROVIDER", "").strip().lower() == "inter" and not env.get("INTER_CLIENT_ID")
            and importlib.util.find_spec("webapp.sandbox.inter")):
        # Banco Inter sandbox (mTLS): certificates made once in .local/inter-certs,
        # where webapp/config.py points the client when INTER_CLIENT_ID is unset.
        from .sandbox import certs
        certs.generate(LOCAL / "inter-certs")
        start("Banco Inter sandbox on :8003", [python, "-m", "webapp.sandbox.inter", "--port", "8003",
                                               "--certs-dir", str(LOCAL / "inter-certs"),
                                               "--retry-intervals", "2,5,15,60"])
    if not env.get("BINANCE_API_KEY") and importlib.util.find_spec("webapp.sandbox.binance"):
        start("Binance sandbox on :8002", [python, "-m", "webapp.sandbox.binance", "--port", "8002",
                                           "--api-key", "sandbox-key", "--secret-key", "sandbox-secret"])
    start("web", [python, "-m", "gunicorn", "--workers", "2", "--threads", "4", "--bind", f"127.0.0.1:{port}",
                  "--access-logfile", "-", "wsgi:app"])
    start("worker", flask + ["worker"])

    print(f"""
  bs-market is running at http://127.0.0.1:{port}
  demo logins (password demo-pass-2026):
    alice@example.com   customer (KYC approved, funded)
    bob@example.com     customer (KYC approved, funded)
    admin@example.com   back office (/admin)
    auditor@example.com auditor (/audit)
  database: make psql   (owner URL: {env['DATABASE_URL']})
  Ctrl-C stops everything.
""", flush=True)

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    print(f"a process exited ({child.args[2] if len(child.args) > 2 else child.args}); stopping",
                          flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if cluster is not None:
            print("stopping PostgreSQL", flush=True)
            cluster.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
