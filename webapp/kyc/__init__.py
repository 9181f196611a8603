"""KYC: the customer's data (level 1), documents for admin review (level 2), the limits per level."""
from flask import Blueprint

bp = Blueprint("kyc", __name__)

from . import views  # noqa: E402,F401
