"""The yearly tax statement (IRPF): positions on 31/12 at average cost, disposals, monthly sales."""
from flask import Blueprint

bp = Blueprint("tax", __name__)

from . import views  # noqa: E402,F401
