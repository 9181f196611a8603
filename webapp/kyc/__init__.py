"""KYC: the customer's data (level 1), documents for admin review (level 2), the limits per level."""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("kyc", __name__)
customers_only(bp, staff_may_open=("document",))  # the admin's KYC review shows the files

from . import views  # noqa: E402,F401
