"""Development and test tooling, not part of the production app: the private PostgreSQL
cluster (`cluster`), `make run` (`run`) and PgBouncer for it (`pgbouncer`)."""
