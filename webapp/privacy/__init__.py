"""LGPD: download my data, close my account, the privacy policy and the terms."""
from flask import Blueprint

bp = Blueprint("privacy", __name__)

from . import views  # noqa: E402,F401
