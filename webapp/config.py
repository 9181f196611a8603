"""Configuration from the environment (a `.env` file is read when present).

Names follow DESIGN.md §6. DATABASE_URL is the owner's URL (migrations,
seeding, `make psql`); the web logs in as `exchange_app`, the worker as
`exchange_worker` and the audit section as `exchange_auditor`: by default the
same server and database as DATABASE_URL with the user swapped, or
APP_DATABASE_URL, WORKER_DATABASE_URL and AUDIT_DATABASE_URL when set
(production, with passwords). With PgBouncer in front (transaction mode),
those three point at it, and DIRECT_DATABASE_URL (default: DATABASE_URL's
server as exchange_worker) at the server itself, for the worker's leader lock.
"""
from __future__ import annotations

import os
from pathlib import Path
from decimal import Decimal

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import ratelimit  # noqa: F401  (registers the swept-memory:// storage of Flask-Limiter)


def role_url(database_url: str, role: str) -> str:
    """The same server and database as `database_url`, as another role."""
    params = conninfo_to_dict(database_url)
    params.pop("password", None)
    params["user"] = role
    return make_conninfo(**params)


def from_environment() -> dict:
    env = os.environ
    database_url = env.get("DATABASE_URL", "")
    sandbox_mp = not env.get("MERCADO_PAGO_ACCESS_TOKEN")
    sandbox_binance = not env.get("BINANCE_API_KEY")
    config = {
        "SECRET_KEY": env.get("SECRET_KEY"),
        "DATABASE_URL": database_url,
        "APP_DATABASE_URL": env.get("APP_DATABASE_URL") or (role_url(database_url, "exchange_app") if database_url else ""),
        "AUDIT_DATABASE_URL": env.get("AUDIT_DATABASE_URL") or (role_url(database_url, "exchange_auditor") if database_url else ""),
        "WORKER_DATABASE_URL": env.get("WORKER_DATABASE_URL") or (role_url(database_url, "exchange_worker") if database_url else ""),
        # The worker's leader lock is a session advisory lock: straight to the
        # server, never through PgBouncer (webapp/jobs.py leader_url).
        "DIRECT_DATABASE_URL": env.get("DIRECT_DATABASE_URL", ""),
        "DB_POOL_MAX": int(env.get("DB_POOL_MAX", "10")),
        "APP_URL": env.get("APP_URL", f"http://127.0.0.1:{env.get('PORT', '8000')}"),
        "MERCADO_PAGO_ACCESS_TOKEN": env.get("MERCADO_PAGO_ACCESS_TOKEN", "TEST-sandbox-token" if sandbox_mp else ""),
        "MERCADO_PAGO_PUBLIC_KEY": env.get("MERCADO_PAGO_PUBLIC_KEY", ""),
        "MERCADO_PAGO_WEBHOOK_SECRET": env.get("MERCADO_PAGO_WEBHOOK_SECRET", "sandbox-webhook-secret" if sandbox_mp else ""),
        "MERCADO_PAGO_BASE_URL": env.get("MERCADO_PAGO_BASE_URL", "http://127.0.0.1:8001" if sandbox_mp else "https://api.mercadopago.com"),
        "BINANCE_API_KEY": env.get("BINANCE_API_KEY", "sandbox-key" if sandbox_binance else ""),
        "BINANCE_SECRET_KEY": env.get("BINANCE_SECRET_KEY", "sandbox-secret" if sandbox_binance else ""),
        "BINANCE_TESTNET": env.get("BINANCE_TESTNET", "false").lower() in ("1", "true", "yes"),
        "BINANCE_BASE_URL": env.get("BINANCE_BASE_URL", "http://127.0.0.1:8002" if sandbox_binance else "https://api.binance.com"),
        "INTER_CLIENT_ID": env.get("INTER_CLIENT_ID", ""),
        "INTER_CLIENT_SECRET": env.get("INTER_CLIENT_SECRET", ""),
        "INTER_CERT_PATH": env.get("INTER_CERT_PATH", ""),
        "INTER_BASE_URL": env.get("INTER_BASE_URL", ""),
        "INTER_PIX_KEY": env.get("INTER_PIX_KEY", ""),
        "INTER_ACCOUNT": env.get("INTER_ACCOUNT", ""),
        "INTER_CA_BUNDLE": env.get("INTER_CA_BUNDLE", ""),   # a private CA (the sandbox's); empty: system CAs
        "PIX_PROVIDER": env.get("PIX_PROVIDER", "mercadopago").strip().lower(),
        "PIX_PROVIDER_TIMEOUT": float(env.get("PIX_PROVIDER_TIMEOUT", "10")),
        "METRICS_TOKEN": env.get("METRICS_TOKEN", ""),
        "SMTP_URL": env.get("SMTP_URL", ""),
        "MAIL_FROM": env.get("MAIL_FROM", "bs-market <no-reply@bs-market.local>"),
        "UPLOAD_DIR": env.get("UPLOAD_DIR", str(Path(__file__).resolve().parent.parent / ".local" / "uploads")),
        # In process; swept once a second (webapp/ratelimit.py). A shared store (redis://…) when
        # several web processes must count together.
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "swept-memory://"),
        # PIX withdrawal requests per client address (make bench-http raises it: wrk has one address).
        "RATELIMIT_WITHDRAWAL": env.get("RATELIMIT_WITHDRAWAL", "10 per minute"),
        "SESSION_COOKIE_SECURE": env.get("APP_URL", "").startswith("https://"),
        "SANDBOX": sandbox_mp or sandbox_binance,
    }
    if config["PIX_PROVIDER"] == "inter" and not env.get("INTER_CLIENT_ID"):
        # Sandbox: the local Banco Inter emulator that `make run` starts (mTLS
        # with the throwaway certificates in .local/inter-certs).
        certs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".local", "inter-certs")
        config.update({
            "INTER_CLIENT_ID": "sandbox-client-id", "INTER_CLIENT_SECRET": "sandbox-client-secret",
            "INTER_BASE_URL": env.get("INTER_BASE_URL") or "https://127.0.0.1:8003",
            "INTER_CERT_PATH": env.get("INTER_CERT_PATH") or os.path.join(certs, "client.pem"),
            "INTER_CA_BUNDLE": env.get("INTER_CA_BUNDLE") or os.path.join(certs, "ca.crt"),
            "INTER_PIX_KEY": env.get("INTER_PIX_KEY") or "12345678000195",
        })
        config["SANDBOX"] = True
    if env.get("BINANCE_TESTNET", "").lower() in ("1", "true", "yes") and not env.get("BINANCE_BASE_URL"):
        config["BINANCE_BASE_URL"] = "https://testnet.binance.vision"
    return config


def to_decimal(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))
