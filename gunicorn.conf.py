"""gunicorn settings of the web process (Procfile: `gunicorn -c gunicorn.conf.py …`).

Chosen by measurement with `make bench-http` (docs/PERFORMANCE.md, "Web performance"):
WEB_CONCURRENCY / GUNICORN_THREADS override the counts.
"""
import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = 5
