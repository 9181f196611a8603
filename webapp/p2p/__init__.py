"""P2P marketplace: the offer book, offers, escrowed trades with chat and proofs, reputation, disputes.

Customer pages live under /p2p; the dispute back office (admins only) under /admin/disputes, on the same
blueprint (registered without a URL prefix). Every state change is one api.*/admin.* call (sql/p2p/).
"""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("p2p", __name__)
customers_only(bp, staff_may_open=("chat", "send_message", "proof", "profile"))  # what a dispute page links to

from . import views, admin_views  # noqa: E402,F401
