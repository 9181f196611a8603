"""PIX deposits: create a charge, show its QR code and live status, list deposits.

The provider calls and the glue used by the webhooks, the worker and P2P
(`create_charge_for_p2p_trade`) are in `service.py`; the jobs in `tasks.py`.
"""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("deposits", __name__)
customers_only(bp)

from . import views  # noqa: E402,F401
from .service import create_charge_for_p2p_trade  # noqa: E402,F401
