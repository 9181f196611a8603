"""Worker jobs of on-chain crypto (collected by webapp/jobs.py); see service.py."""
from __future__ import annotations

import logging

from . import service

log = logging.getLogger("bs-market.crypto")


def _logged(name, done):
    if done and any(done.values() if isinstance(done, dict) else [done]):
        log.info("%s: %s", name, done)
    return done


def refresh_crypto_config(app) -> dict:
    return _logged("crypto config", service.refresh_config(app))


def provision_crypto_addresses(app) -> dict:
    return _logged("crypto addresses", service.provision(app))


def poll_crypto_deposits(app) -> dict:
    return _logged("crypto deposits", service.poll_deposits(app))


def sweep_crypto_deposits(app) -> dict:
    return _logged("crypto sweeps", service.sweep(app))


def send_crypto_withdrawals(app) -> dict:
    return _logged("crypto withdrawals sent", service.send_withdrawals(app))


def recheck_crypto_withdrawals(app) -> dict:
    return _logged("crypto withdrawals rechecked", service.recheck_withdrawals(app))


JOBS = [(refresh_crypto_config, 300), (provision_crypto_addresses, 3), (poll_crypto_deposits, 15),
        (sweep_crypto_deposits, 20), (send_crypto_withdrawals, 5), (recheck_crypto_withdrawals, 30)]
