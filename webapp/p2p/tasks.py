"""Worker jobs of the P2P marketplace: the payment-deadline sweeper and offer expiry."""
from __future__ import annotations

import logging

from .. import db

log = logging.getLogger("bs-market.p2p")


def expire_p2p_trades(app):
    """Cancel OPEN trades past their payment deadline, returning the escrow (also enforced on every action)."""
    count = db.worker_call(app, "admin.expire_p2p_trades")[0]["expire_p2p_trades"]
    if count:
        log.info("p2p: cancelled %d trades past their payment deadline", count)
    return count


def expire_p2p_offers(app):
    """Expire offers past their expiry, releasing SELL offers' holds."""
    count = db.worker_call(app, "admin.expire_p2p_offers")[0]["expire_p2p_offers"]
    if count:
        log.info("p2p: expired %d offers", count)
    return count


JOBS = [(expire_p2p_trades, 20), (expire_p2p_offers, 120)]
