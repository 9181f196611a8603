"""The market desk: live Binance prices, instant buy and sell at market, the portfolio."""
from flask import Blueprint

bp = Blueprint("market", __name__, url_prefix="/market")

from . import views  # noqa: E402,F401
