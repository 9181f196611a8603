"""The PIX provider interface: what the deposit and withdrawal flows need from
Mercado Pago or Banco Inter, and nothing provider-specific.

Every call is keyed by *our* reference (the deposit or withdrawal row id).
Clients derive the provider's idempotency key from it, so a retry after a crash
or a timeout can never create a second charge or a second payout.

Error contract (`ProviderError`):
- `outcome_unknown=True`: the request may or may not have taken effect (timeout,
  connection dropped, 5xx on a create). The caller must look the operation up
  by reference/id before doing anything else, never resend blindly.
- `retryable=True`: it is safe to try the same call again later (the idempotency
  key makes a resend harmless on providers that honour it).
- otherwise a definite rejection; `message` says why in words a person can use.
  `NotCancellable` (a subclass) is the definite "this charge can no longer be
  cancelled" of `cancel_charge`; its `charge` says what it is instead (paid…).

Clawback vocabulary (a charge whose money goes back, or may):
- CHARGE_REFUNDED: we refunded all of it (`refund_charge`); a partial refund
  leaves the charge CHARGE_APPROVED with `refunded_amount` set;
- CHARGE_CHARGED_BACK: the payer's bank took it back (PIX MED devolução);
- CHARGE_IN_MEDIATION: disputed (MED), the money is blocked, outcome pending.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

import requests
from urllib3.exceptions import NewConnectionError

from ..formatting import N_

# Normalized statuses, shared by all providers.
CHARGE_PENDING = "pending"
CHARGE_APPROVED = "approved"
CHARGE_CANCELLED = "cancelled"
CHARGE_EXPIRED = "expired"
CHARGE_REFUNDED = "refunded"           # all of it sent back by us
CHARGE_CHARGED_BACK = "charged_back"   # taken back by the payer's bank (MED)
CHARGE_IN_MEDIATION = "in_mediation"   # disputed (MED): blocked, not final
CHARGE_REJECTED = "rejected"
CHARGE_STATUSES = (CHARGE_PENDING, CHARGE_APPROVED, CHARGE_CANCELLED,
                   CHARGE_EXPIRED, CHARGE_REFUNDED, CHARGE_CHARGED_BACK,
                   CHARGE_IN_MEDIATION, CHARGE_REJECTED)

REFUND_PENDING = "pending"         # asked for, not settled yet
REFUND_COMPLETED = "completed"     # the money left
REFUND_FAILED = "failed"           # it did not, and will not
REFUND_STATUSES = (REFUND_PENDING, REFUND_COMPLETED, REFUND_FAILED)

PAYOUT_PENDING = "pending"
PAYOUT_COMPLETED = "completed"
PAYOUT_FAILED = "failed"
PAYOUT_STATUSES = (PAYOUT_PENDING, PAYOUT_COMPLETED, PAYOUT_FAILED)

# The normalized charge statuses as a person reads them (translated when shown: `tr()`).
CHARGE_STATUS_TEXTS = {
    CHARGE_PENDING: N_("aguardando pagamento"), CHARGE_APPROVED: N_("pago"), CHARGE_CANCELLED: N_("cancelado"),
    CHARGE_EXPIRED: N_("expirado"), CHARGE_REFUNDED: N_("devolvido por nós"),
    CHARGE_CHARGED_BACK: N_("devolvido ao pagador pelo banco (MED)"),
    CHARGE_IN_MEDIATION: N_("em disputa (MED): valor bloqueado"), CHARGE_REJECTED: N_("recusado"),
}


def charge_status_text(status: str | None) -> str:
    return CHARGE_STATUS_TEXTS.get(status or "", status or "")


class ProviderError(Exception):
    """A provider call failed; see the module docstring for the two flags."""

    def __init__(self, message: str, *, retryable: bool = False, outcome_unknown: bool = False,
                 status: int | None = None, code: str | None = None, raw=None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.status = status      # HTTP status when there was a response
        self.code = code          # provider error code, e.g. "not_found", "2018"
        self.raw = raw            # parsed error body, for logs

    def __repr__(self) -> str:
        return (f"ProviderError({self.message!r}, status={self.status}, code={self.code!r}, "
                f"retryable={self.retryable}, outcome_unknown={self.outcome_unknown})")


class NotFound(ProviderError):
    """The provider does not know this id (a definite answer, not a failure to ask)."""


class NotCancellable(ProviderError):
    """`cancel_charge` refused for good: the charge is paid, refunded, disputed…
    `charge` is the charge as the provider shows it now (None if that look-up failed)."""

    not_cancellable = True

    def __init__(self, message: str, *, charge: "Charge | None" = None, **kwargs):
        super().__init__(message, **kwargs)
        self.charge = charge


def connection_never_made(exc: BaseException) -> bool:
    """True when a `requests` error means the TCP connection was never made,
    so the request cannot have reached the provider (safe to retry as new)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen = exc
    for _ in range(5):   # requests.ConnectionError -> MaxRetryError -> .reason
        seen = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else getattr(seen, "reason", None)
        if seen is None:
            return False
        if isinstance(seen, NewConnectionError):
            return True
    return False


@dataclass(frozen=True)
class Charge:
    """A PIX charge (pay-in) as the provider sees it now."""
    provider_id: str
    reference: str | None
    amount: Decimal                 # amount requested
    status: str                     # one of CHARGE_STATUSES
    qr_code: str | None             # BR Code "copia e cola"
    qr_code_base64: str | None      # PNG, base64, when the provider renders one
    expires_at: datetime | None
    payer_cpf: str | None           # who actually paid, when known
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    status_detail: str | None = None
    paid_amount: Decimal | None = None   # what arrived, when the provider says so
    paid_at: datetime | None = None
    end_to_end_id: str | None = None
    refunded_amount: Decimal | None = None   # sent back so far (refunds, MED), when known


@dataclass(frozen=True)
class Refund:
    """Money sent back to the payer of a charge (a MP refund, a PIX devolução)."""
    id: str                         # the provider's refund id (Inter: our devolução id)
    charge_id: str                  # the charge's provider_id
    amount: Decimal
    status: str                     # one of REFUND_STATUSES
    status_detail: str | None = None     # the provider's own status word
    created_at: datetime | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Payout:
    """A PIX transfer out (withdrawal) as the provider sees it now."""
    provider_id: str
    reference: str | None
    amount: Decimal
    status: str                     # one of PAYOUT_STATUSES
    failure_reason: str | None
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    status_detail: str | None = None


def payout_failure_text(texts: dict[str, str], payout: Payout) -> str:
    """Why a payout failed, as the customer reads it, from a provider's `texts` (by its
    status_detail, or the code that starts its failure_reason); stored in Portuguese and
    translated when shown."""
    detail = payout.status_detail or ""
    code = (payout.failure_reason or "").split(":")[0].split("/")[-1]
    return texts.get(detail) or texts.get(code) or \
        f"recusado pelo provedor PIX ({payout.failure_reason or detail or 'sem motivo informado'})"


@runtime_checkable
class PixProvider(Protocol):
    """What MercadoPagoClient and InterClient both implement."""

    name: str

    def create_pix_charge(self, reference: str, amount: Decimal, payer_email: str,
                          payer_cpf: str | None, expires_at: datetime, description: str,
                          notification_url: str | None = None) -> Charge: ...

    def get_charge(self, provider_id: str) -> Charge: ...

    def find_charges_by_reference(self, reference: str) -> list[Charge]: ...

    def cancel_charge(self, provider_id: str) -> Charge:
        """Make an unpaid charge unpayable. Returns it CHARGE_CANCELLED (or CHARGE_EXPIRED
        when it had already expired: as good). Raises NotCancellable when it was paid
        (or is otherwise past cancelling); the error's `charge` says what it is."""
        ...

    def refund_charge(self, provider_id: str, amount: Decimal, idempotency_key: str) -> Refund:
        """Send `amount` (all or part of what was paid) back to the payer. The same
        `idempotency_key` returns the same refund, never a second one. More than what
        is left to refund is a definite ProviderError."""
        ...

    def get_refund(self, provider_id: str, refund_id: str) -> Refund: ...

    def list_refunds(self, provider_id: str) -> list[Refund]: ...

    def send_pix_payout(self, reference: str, amount: Decimal, key_type: str, key_value: str,
                        notification_url: str | None = None) -> Payout: ...

    def get_payout(self, provider_id: str) -> Payout: ...

    def payout_failure_text(self, payout: Payout) -> str:
        """Why this failed payout failed, for the customer (the provider's own texts)."""
        ...
