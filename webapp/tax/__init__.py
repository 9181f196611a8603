"""The yearly tax statement (IRPF): positions on 31/12 at average cost, disposals, monthly sales."""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("tax", __name__)
customers_only(bp)

from . import views  # noqa: E402,F401
