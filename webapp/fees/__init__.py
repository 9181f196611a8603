"""The public fee schedule: /tarifas (no login)."""
from flask import Blueprint

bp = Blueprint("fees", __name__)

from . import views  # noqa: E402,F401
