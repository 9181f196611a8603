"""Provider notifications: /webhooks/mercadopago (signed, providers.md B) and
/webhooks/inter (unsigned: trusted only through what Inter's API answers)."""
from flask import Blueprint

bp = Blueprint("webhooks", __name__)

from . import views  # noqa: E402,F401
