"""The wallet: balances per currency, the statement, and sending to another customer."""
from flask import Blueprint

bp = Blueprint("wallet", __name__)

from . import views  # noqa: E402,F401
