"""The market desk: live Binance prices, instant buy and sell at market, the portfolio."""
from flask import Blueprint

from ..auth.roles import customers_only

bp = Blueprint("market", __name__, url_prefix="/market")
customers_only(bp)

from . import views  # noqa: E402,F401
