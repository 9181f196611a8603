"""The notification centre (/notifications), the unread badge in the nav, and
the e-mail copies sent by the worker (tasks.py)."""
from flask import Blueprint

bp = Blueprint("notifications", __name__)

from . import views  # noqa: E402,F401
