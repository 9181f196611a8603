"""The back office (/admin): KYC review, customer lookup, freeze, adjustments, audit log. Admins only."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import views  # noqa: E402,F401
