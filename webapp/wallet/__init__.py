"""The wallet: balances per currency, the statement, and sending to another customer."""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("wallet", __name__)
customers_only(bp, staff_may_open=("home", "favicon"))

from . import views  # noqa: E402,F401
