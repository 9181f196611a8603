"""/metrics: Prometheus text format, for the operators' monitoring.

Served to loopback clients, or to anyone presenting `Authorization: Bearer
<METRICS_TOKEN>` when that setting is configured.
"""
from __future__ import annotations

import hmac
import json

from flask import Blueprint, Response, abort, current_app, request

from .. import csrf, db

bp = Blueprint("metrics", __name__)


def _allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and given and hmac.compare_digest(token, given):
        return True
    return request.remote_addr in ("127.0.0.1", "::1")


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    parts = [f'{key}="{str(value).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
             for key, value in sorted(labels.items())]
    return "{" + ",".join(parts) + "}"


@bp.get("/metrics")
@csrf.exempt
def metrics():
    if not _allowed():
        abort(403)
    lines = []
    seen = set()
    for row in db.call("admin.get_metrics"):
        if row["metric"] not in seen:
            seen.add(row["metric"])
            lines.append(f"# TYPE {row['metric']} gauge")
        labels = row["labels"] if isinstance(row["labels"], dict) else json.loads(row["labels"] or "{}")
        lines.append(f"{row['metric']}{_labels(labels)} {row['value']}")
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
