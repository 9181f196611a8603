"""PIX withdrawals: the customer's form and list, the admin approval pages
(/admin/withdrawals…), and (service.py, tasks.py) the payouts the worker sends."""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("withdrawals", __name__)
customers_only(bp)

from . import views  # noqa: E402,F401
