"""Command-line interface: `flask --app wsgi db upgrade | seed-demo | worker`."""
from __future__ import annotations

import click
import psycopg
from flask import current_app
from flask.cli import AppGroup
from werkzeug.security import generate_password_hash

from . import migrate

DEMO_PASSWORD = "demo-pass-2026"

db_cli = AppGroup("db", help="Database schema: migrations and sql/.")


@db_cli.command("upgrade")
def db_upgrade():
    """Apply migrations/ and sql/ to DATABASE_URL (idempotent)."""
    migrate.upgrade(current_app.config["DATABASE_URL"], log=click.echo)


@click.command("seed-demo")
@click.option("--mark-development", is_flag=True,
              help="Mark this database as a development one first (the seed refuses any other).")
def seed_demo(mark_development):
    """Create the demo users, fund them through ledger entries and publish a few P2P offers (idempotent; development databases only)."""
    with psycopg.connect(current_app.config["DATABASE_URL"]) as conn:
        if mark_development:
            conn.execute("update core.settings set value = 'development' where name = 'environment'")
        try:
            password_hash = generate_password_hash(DEMO_PASSWORD)
            rows = conn.execute("select * from core.seed_demo(%s)", (password_hash,)).fetchall()
            # demo makers and offers, so the P2P book can be tried at once
            offers = conn.execute("select * from core.seed_demo_offers(%s)", (password_hash,)).fetchall()
        except psycopg.Error as exc:
            raise click.ClickException(exc.diag.message_primary or str(exc)) from exc
    for email, role in rows:
        click.echo(f"  {email:24} {role:9} password: {DEMO_PASSWORD}")
    makers = sorted({maker for _, maker, _, _ in offers})
    click.echo(f"  {len(offers)} demo P2P offers by {', '.join(makers)} (password: {DEMO_PASSWORD})")


@click.command("worker")
def worker():
    """Run the scheduler (prices, expiries, reconciliation, payouts): one leader at a time."""
    from . import jobs
    jobs.run_worker(current_app._get_current_object())


def init_app(app):
    app.cli.add_command(db_cli)
    app.cli.add_command(seed_demo)
    app.cli.add_command(worker)
