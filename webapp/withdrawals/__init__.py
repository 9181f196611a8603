"""PIX withdrawals: the customer's form and list, the admin approval pages
(/admin/withdrawals…), and (service.py, tasks.py) the payouts the worker sends."""
from flask import Blueprint

bp = Blueprint("withdrawals", __name__)

from . import views  # noqa: E402,F401
