"""On-chain crypto: deposit addresses and deposits (/wallet/<coin>/deposit), withdrawals
with an address book (/wallet/<coin>/withdraw), and (service.py, tasks.py) the Binance
calls the worker makes between the SQL steps of sql/crypto.sql."""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("crypto", __name__)
customers_only(bp)

from . import views  # noqa: E402,F401
