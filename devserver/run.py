"""`make run`: everything a newcomer needs, started by one command.

Starts the private PostgreSQL cluster (unless DATABASE_URL is set), applies
migrations and sql/, seeds the demo data, starts the sandbox emulators when
no provider credentials are set, then gunicorn and the worker. Prints the URL
and the demo logins. Ctrl-C stops everything this command started.

A second `make run` must work like the first (issue 20):
- every child runs in its own process group; Ctrl-C (or SIGTERM) sends SIGTERM
  to each group, waits, then SIGKILLs what is left of the group (a gunicorn
  worker whose master died too) and waits again: nothing outlives this command
  and the ports are free when it returns;
- runtime files live under `.local/` (BSM_LOCAL_DIR overrides it): the gunicorn
  control socket in `.local/run/`, the emulators' id high-water marks in
  `.local/sandbox/` (their ids never repeat after a restart, sandbox/ids.py);
- ports: PORT (8000), MP_SANDBOX_PORT (8001), BINANCE_SANDBOX_PORT (8002),
  INTER_SANDBOX_PORT (8003), MAIL_SANDBOX_PORT (8004, the inbox page) and
  MAIL_SMTP_PORT (1025, the SMTP sink, used when SMTP_URL is not set).

Growing past one machine (docs/SCALING.md):
- `USE_PGBOUNCER=1`: a PgBouncer in transaction mode (PGBOUNCER_PORT, 6432) in front of the
  database; the web, the worker's jobs and the audit section connect through it, migrations and
  the worker's leader lock (DIRECT_DATABASE_URL) straight to the server;
- `REPLICA=1`: a hot standby of the private cluster (pg_basebackup -R, REPLICA_PORT, 54330, in
  `.local/pg-replica`); `/audit` reads from it (AUDIT_DATABASE_URL).
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import pgbouncer
from webapp.config import role_url
from .cluster import PROJECT, Cluster, default_base

LOCAL = Path(os.environ.get("BSM_LOCAL_DIR") or PROJECT / ".local")
STOP_GRACE_SECONDS = 10


def secret_key() -> str:
    """A SECRET_KEY kept in .local so sessions survive a restart."""
    path = LOCAL / "secret_key"
    if not path.exists():
        LOCAL.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def stop_children(children: list[subprocess.Popen], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every child's process group, wait up to `grace` seconds, SIGKILL the groups
    (leaders and whatever they left behind), and reap them all."""
    def signal_group(child, sig):
        try:
            os.killpg(child.pid, sig)      # the child leads its own group (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    for child in children:
        if child.poll() is None:
            signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        signal_group(child, signal.SIGKILL)   # the leader if still there, and any orphan of its group
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"process {child.pid} did not die", flush=True)


def main() -> int:
    env = os.environ.copy()
    python = sys.executable
    cluster = None
    replica = None
    children: list[subprocess.Popen] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    run_dir = LOCAL / "run"
    state_dir = LOCAL / "sandbox"
    run_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    port = env.setdefault("PORT", "8000")
    mp_port = env.get("MP_SANDBOX_PORT", "8001")
    binance_port = env.get("BINANCE_SANDBOX_PORT", "8002")
    inter_port = env.get("INTER_SANDBOX_PORT", "8003")
    mail_port = env.get("MAIL_SANDBOX_PORT", "8004")
    smtp_port = env.get("MAIL_SMTP_PORT", "1025")
    env.setdefault("APP_URL", f"http://127.0.0.1:{port}")

    def start(name, cmd):
        print(f"starting {name}", flush=True)
        # Its own process group: a terminal's Ctrl-C reaches only us, and we stop the
        # whole group (gunicorn's workers with their master).
        children.append(subprocess.Popen(cmd, env=env, cwd=PROJECT, start_new_session=True))

    try:
        private = not env.get("DATABASE_URL")
        if private:
            cluster = Cluster()
            print(f"starting PostgreSQL in {cluster.datadir} (port {cluster.port})", flush=True)
            cluster.start()
            cluster.ensure_database()
            env["DATABASE_URL"] = cluster.url()
        env.setdefault("SECRET_KEY", secret_key())

        flask = [python, "-m", "flask", "--app", "wsgi"]
        subprocess.run(flask + ["db", "upgrade"], env=env, check=True, cwd=PROJECT)
        # The private cluster is a development database: the demo seed may run
        # there. On a DATABASE_URL of yours it runs only if you marked it so.
        seed = subprocess.run(flask + ["seed-demo"] + (["--mark-development"] if private else []), env=env,
                              cwd=PROJECT, stdout=subprocess.DEVNULL)
        if seed.returncode != 0:
            print("demo data not seeded: this database is not marked as a development one "
                  "(`flask --app wsgi seed-demo --mark-development` does it)", flush=True)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        if env.get("REPLICA") == "1":
            if cluster is None:
                print("REPLICA=1 builds a standby of the private cluster only; with DATABASE_URL set, "
                      "point AUDIT_DATABASE_URL at your own replica", flush=True)
            else:
                replica = Cluster(base=cluster.base.parent / "pg-replica", port=int(env.get("REPLICA_PORT", "54330")))
                print(f"starting the hot standby in {replica.datadir} (port {replica.port})", flush=True)
                replica.replicate_from(cluster)
                replica.start()
                env.setdefault("AUDIT_DATABASE_URL", role_url(replica.url(), "exchange_auditor"))
        if env.get("USE_PGBOUNCER") == "1":
            if not pgbouncer.binary():
                print(pgbouncer.INSTALL_HINT, flush=True)
                return 1
            from psycopg.conninfo import conninfo_to_dict
            server = conninfo_to_dict(env["DATABASE_URL"])
            passwords = {conninfo_to_dict(env[key]).get("user"): conninfo_to_dict(env[key]).get("password")
                         for key in ("APP_DATABASE_URL", "WORKER_DATABASE_URL", "AUDIT_DATABASE_URL")
                         if env.get(key) and conninfo_to_dict(env[key]).get("password")}
            bouncer = pgbouncer.Bouncer(default_base().parent / "pgbouncer", int(env.get("PGBOUNCER_PORT", "6432")),
                                        server.get("host", "127.0.0.1"), int(server.get("port", 5432)), passwords)
            start(f"PgBouncer (transaction mode) on :{bouncer.port}", bouncer.command())
            bouncer.process = children[-1]
            bouncer.wait_ready()
            env.setdefault("DIRECT_DATABASE_URL", role_url(env["DATABASE_URL"], "exchange_worker"))
            pooled = [("APP_DATABASE_URL", "exchange_app"), ("WORKER_DATABASE_URL", "exchange_worker")]
            if replica is None:   # the standby's few audit connections go to it directly
                pooled.append(("AUDIT_DATABASE_URL", "exchange_auditor"))
            for key, role in pooled:
                env[key] = bouncer.url(env.get(key) or role_url(env["DATABASE_URL"], role))

        if not env.get("MERCADO_PAGO_ACCESS_TOKEN"):
            env.setdefault("MERCADO_PAGO_BASE_URL", f"http://127.0.0.1:{mp_port}")
            start(f"Mercado Pago sandbox on :{mp_port}",
                  [python, "-m", "sandbox.mercadopago", "--port", mp_port,
                   "--webhook-secret", "sandbox-webhook-secret", "--state-dir", str(state_dir)])
        if env.get("PIX_PROVIDER", "").strip().lower() == "inter" and not env.get("INTER_CLIENT_ID"):
            # Banco Inter sandbox (mTLS): certificates made once in .local/inter-certs,
            # where webapp/config.py points the client when INTER_CLIENT_ID is unset.
            from sandbox import certs
            certs.generate(PROJECT / ".local" / "inter-certs")
            env.setdefault("INTER_BASE_URL", f"https://127.0.0.1:{inter_port}")
            start(f"Banco Inter sandbox on :{inter_port}",
                  [python, "-m", "sandbox.inter", "--port", inter_port,
                   "--certs-dir", str(PROJECT / ".local" / "inter-certs"),
                   "--retry-intervals", "2,5,15,60", "--state-dir", str(state_dir)])
        if not env.get("BINANCE_API_KEY"):
            env.setdefault("BINANCE_BASE_URL", f"http://127.0.0.1:{binance_port}")
            start(f"Binance sandbox on :{binance_port}",
                  [python, "-m", "sandbox.binance", "--port", binance_port,
                   "--api-key", "sandbox-key", "--secret-key", "sandbox-secret"])
        if not env.get("SMTP_URL"):
            # Mail goes to a local sink; the inbox page shows it (links clickable).
            env["SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
            start(f"mail sandbox (SMTP :{smtp_port}, inbox http://127.0.0.1:{mail_port}/_sandbox/mail)",
                  [python, "-m", "sandbox.mail", "--smtp-port", smtp_port, "--port", mail_port,
                   "--state-dir", str(LOCAL / "mail")])
        start("web", [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                      "--graceful-timeout", "5", "--control-socket", str(run_dir / "gunicorn.ctl"),
                      "--access-logfile", "-", "wsgi:app"])
        start("worker", flask + ["worker"])

        print(f"""
  bs-market is running at http://127.0.0.1:{port}
  demo logins (password demo-pass-2026):
    alice@example.com   customer (KYC approved, funded)
    bob@example.com     customer (KYC approved, funded)
    admin@example.com   back office (/admin)
    auditor@example.com auditor (/audit)
  e-mail: {"sandbox inbox http://127.0.0.1:" + mail_port + "/_sandbox/mail" if env.get("SMTP_URL", "").endswith(":" + smtp_port) else env.get("SMTP_URL") or "not sent (SMTP_URL unset)"}
  database: make psql   (owner URL: {env['DATABASE_URL']})
  web pool: {env.get('APP_DATABASE_URL') or 'DATABASE_URL as exchange_app'}
  audit reads: {env.get('AUDIT_DATABASE_URL') or 'DATABASE_URL as exchange_auditor'}
  Ctrl-C stops everything.
""", flush=True)

        while not stopping:
            for child in children:
                if child.poll() is not None:
                    print(f"a process exited ({child.args[2] if len(child.args) > 2 else child.args}); stopping",
                          flush=True)
                    stopping = True
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not cut the cleanup short
        stop_children(children)
        if replica is not None:
            print("stopping the hot standby", flush=True)
            replica.stop()
        if cluster is not None:
            print("stopping PostgreSQL", flush=True)
            cluster.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
