"""Provider clients. `pix_provider(config)` builds the PIX provider the
configuration names (PIX_PROVIDER = mercadopago | inter); `get_pix_provider(app)`
keeps one per app and provider, so Inter's OAuth token is reused.

Imports are lazy: importing `webapp.providers.binance` does not load the PIX SDKs.
"""
from __future__ import annotations

PIX_PROVIDERS = ("mercadopago", "inter")


def pix_provider(config, name: str | None = None):
    """A new PIX client (MercadoPagoClient or InterClient) from a Flask config mapping."""
    name = (name or config.get("PIX_PROVIDER") or "mercadopago").strip().lower()
    timeout = float(config.get("PIX_PROVIDER_TIMEOUT") or 10)
    if name == "mercadopago":
        from .mercadopago import MercadoPagoClient
        return MercadoPagoClient(config["MERCADO_PAGO_ACCESS_TOKEN"],
                                 base_url=config.get("MERCADO_PAGO_BASE_URL") or None, timeout=timeout)
    if name == "inter":
        from .inter import InterClient
        return InterClient(config.get("INTER_CLIENT_ID"), config.get("INTER_CLIENT_SECRET"),
                           config.get("INTER_CERT_PATH"), config.get("INTER_PIX_KEY"),
                           base_url=config.get("INTER_BASE_URL") or None,
                           account=config.get("INTER_ACCOUNT") or None, timeout=timeout,
                           verify=config.get("INTER_CA_BUNDLE") or True)
    raise ValueError(f"PIX_PROVIDER must be one of {', '.join(PIX_PROVIDERS)}, not {name!r}")


def pix_provider_name(config) -> str:
    name = (config.get("PIX_PROVIDER") or "mercadopago").strip().lower()
    if name not in PIX_PROVIDERS:
        raise ValueError(f"PIX_PROVIDER must be one of {', '.join(PIX_PROVIDERS)}, not {name!r}")
    return name


def get_pix_provider(app, name: str | None = None):
    """The app's client for `name` (default: the configured provider), created once."""
    name = name or pix_provider_name(app.config)
    cache = app.extensions.setdefault("pix_providers", {})
    if name not in cache:
        cache[name] = pix_provider(app.config, name)
    return cache[name]
