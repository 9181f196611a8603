"""PIX helpers: BR Code ("copia e cola") generation and validation, CNPJ
check digits, and PIX key normalization (the Python mirror of sql/identifiers.sql;
the CPF rule is webapp/cpf.py).

Pure functions, no I/O. Used by the deposit/withdrawal forms (key validation),
by the provider emulators (BR Codes for charges) and by tests.
See providers.md G for the format and the test vectors.

Money is always `Decimal`; a float amount is refused so a binary rounding
error can never end up inside a QR code.
"""
from __future__ import annotations

import binascii
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from . import cpf
from .formatting import N_

PIX_GUI = "br.gov.bcb.pix"

KEY_TYPES = ("CPF", "CNPJ", "EMAIL", "PHONE", "EVP")

# Area codes (DDD) in use in Brazil (Anatel). A phone key with any other DDD is a typo.
VALID_DDDS = frozenset(
    {11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 24, 27, 28}
    | set(range(31, 36)) | {37, 38}
    | set(range(41, 47)) | {47, 48, 49, 51, 53, 54, 55}
    | set(range(61, 70)) | {71, 73, 74, 75, 77, 79}
    | set(range(81, 90)) | set(range(91, 100))
)

_EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_EVP_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")
_TXID_RE = re.compile(r"^[A-Za-z0-9]{1,25}$")
_AMOUNT_RE = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
_CNPJ_RE = re.compile(r"[0-9A-Za-z]{12}[0-9]{2}")


# --------------------------------------------------------------------------- BR Code

def crc16(payload: str) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) as 4 upper-case hex digits."""
    return "%04X" % binascii.crc_hqx(payload.encode("ascii"), 0xFFFF)


def ascii_text(value: str) -> str:
    """Strip accents and drop anything that is not printable ASCII.

    BR Code lengths count bytes; a multi-byte UTF-8 character would make the
    declared length wrong for most readers.
    """
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded if 32 <= ord(ch) < 127).strip()


def _tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"BR Code field {tag} is too long ({len(value)} > 99 characters)")
    return f"{tag}{len(value):02d}{value}"


def format_amount(amount: Decimal) -> str:
    """Decimal -> BR Code amount text (dot decimal, two places)."""
    if isinstance(amount, float) or not isinstance(amount, (Decimal, int)):
        raise TypeError("amount must be a Decimal (never a float)")
    amount = Decimal(amount)
    if amount <= 0:
        raise ValueError("amount must be positive")
    text = f"{amount.quantize(Decimal('0.01')):.2f}"
    if amount != Decimal(text):
        raise ValueError(f"amount {amount} has more than two decimal places")
    return text


def brcode(key: str | None, amount: Decimal | None, name: str, city: str,
           txid: str = "***", gui: str = PIX_GUI, url: str | None = None) -> str:
    """A PIX BR Code (providers.md G.2).

    With `key`: the static style Mercado Pago issues (key in 26/01, no tag 01).
    With `url` instead (no scheme, e.g. "pix.example.com/qr/v2/cob/…"): the
    dynamic style of the BACEN cob API, with 01=12 (single use) and the payload
    location in 26/25.
    `amount` None (or zero) leaves tag 54 out, so the payer types the value.
    `name` and `city` are folded to ASCII and cut to 25 and 15 characters.
    """
    if bool(key) == bool(url):
        raise ValueError("give exactly one of a PIX key or a payload URL")
    if txid != "***" and not _TXID_RE.match(txid):
        raise ValueError("txid must be 1-25 letters or digits (or '***')")
    name = ascii_text(name)[:25]
    city = ascii_text(city)[:15]
    if not name or not city:
        raise ValueError("merchant name and city are required")
    merchant_account = _tlv("00", gui) + (_tlv("01", key) if key else _tlv("25", url))
    payload = (
        _tlv("00", "01")
        + (_tlv("01", "12") if url else "")
        + _tlv("26", merchant_account)
        + _tlv("52", "0000")
        + _tlv("53", "986")
        + (_tlv("54", format_amount(amount)) if amount else "")
        + _tlv("58", "BR")
        + _tlv("59", name)
        + _tlv("60", city)
        + _tlv("62", _tlv("05", txid))
        + "6304"
    )
    return payload + crc16(payload)


@dataclass(frozen=True)
class BRCode:
    """A parsed, CRC-checked BR Code."""
    key: str | None            # 26/01 (None for a dynamic QR that carries a URL)
    url: str | None            # 26/25
    gui: str
    amount: Decimal | None     # tag 54
    name: str                  # tag 59
    city: str                  # tag 60
    txid: str | None           # 62/05
    crc: str
    fields: dict = field(default_factory=dict, compare=False)


def _walk(payload: str, where: str) -> dict[str, str]:
    """Split a TLV string into {tag: value}; every length must fit exactly."""
    out: dict[str, str] = {}
    i = 0
    while i < len(payload):
        head = payload[i:i + 4]
        if len(head) < 4 or not head.isdigit():
            raise ValueError(f"BR Code inválido: campo malformado em {where}, posição {i}")
        tag, length = head[:2], int(head[2:])
        value = payload[i + 4:i + 4 + length]
        if len(value) != length:
            raise ValueError(
                f"BR Code inválido: o campo {tag} declara {length} caracteres, "
                f"mas só há {len(value)} ({where})")
        if tag in out:
            raise ValueError(f"BR Code inválido: campo {tag} repetido ({where})")
        out[tag] = value
        i += 4 + length
    return out


def parse_brcode(s: str) -> BRCode:
    """Validate a "copia e cola" string and return its parts.

    Checks: ASCII only; a clean TLV walk where every length fits; payload
    format `01` first; it ends with `6304` + 4 hex digits and that CRC
    recomputes; the mandatory fields (26 with the PIX GUI, 52, 53, 58, 59, 60).
    Raises ValueError with a readable message on the first problem.
    """
    if not isinstance(s, str) or not s:
        raise ValueError("BR Code vazio")
    s = s.strip()
    if not s.isascii():
        raise ValueError("BR Code inválido: contém caracteres fora do ASCII")
    if not s.startswith("000201"):
        raise ValueError("BR Code inválido: deve começar com 000201")
    if len(s) < 8 or s[-8:-4] != "6304" or not re.fullmatch(r"[0-9A-Fa-f]{4}", s[-4:]):
        raise ValueError("BR Code inválido: deve terminar com 6304 seguido do CRC (4 dígitos hex)")
    fields = _walk(s, "raiz")
    if list(fields)[-1] != "63":
        raise ValueError("BR Code inválido: o CRC (campo 63) deve ser o último campo")
    expected = crc16(s[:-4])
    if s[-4:].upper() != expected:
        raise ValueError(f"BR Code inválido: CRC {s[-4:].upper()} não confere (esperado {expected})")

    gui = key = url = None
    # Merchant account information lives in one of tags 26..51; PIX uses its GUI.
    for tag in (f"{n:02d}" for n in range(26, 52)):
        if tag in fields:
            sub = _walk(fields[tag], f"campo {tag}")
            if sub.get("00", "").lower() == PIX_GUI:
                gui, key, url = sub["00"], sub.get("01"), sub.get("25")
                break
    if gui is None:
        raise ValueError("BR Code inválido: sem conta PIX (GUI br.gov.bcb.pix no campo 26)")
    if not key and not url:
        raise ValueError("BR Code inválido: sem chave PIX (26/01) nem URL (26/25)")
    for tag, label in (("52", "categoria"), ("53", "moeda"), ("58", "país"),
                       ("59", "nome do recebedor"), ("60", "cidade")):
        if not fields.get(tag):
            raise ValueError(f"BR Code inválido: falta o campo {tag} ({label})")
    if fields["53"] != "986":
        raise ValueError("BR Code inválido: a moeda (campo 53) deve ser 986 (BRL)")

    amount = None
    if "54" in fields:
        if not _AMOUNT_RE.match(fields["54"]):
            raise ValueError(f"BR Code inválido: valor {fields['54']!r} malformado (campo 54)")
        amount = Decimal(fields["54"])
    txid = None
    if "62" in fields:
        txid = _walk(fields["62"], "campo 62").get("05")
    return BRCode(key=key, url=url, gui=gui, amount=amount, name=fields["59"],
                  city=fields["60"], txid=txid, crc=s[-4:].upper(), fields=fields)


# --------------------------------------------------------------------------- CPF / CNPJ
# The rules themselves live in SQL (sql/identifiers.sql); these mirror them for
# the forms, and tests/test_identifiers.py requires both to agree.

# The CPF rule is webapp/cpf.py; re-exported for the provider clients and emulators.
is_cpf = cpf.is_valid

# ASCII white space, as the database trims it (core.pix_normalize_key).
_SPACE = " \t\n\r\f\v"
_CNPJ_PUNCTUATION = re.compile(r"[./ \t\n\r\f\v-]")


def _clean_cnpj(value: str) -> str | None:
    """Bare and upper-case when it has the shape of a CNPJ (core.cnpj_clean), else None."""
    n = _CNPJ_PUNCTUATION.sub("", value)
    return n.upper() if _CNPJ_RE.fullmatch(n) else None


def _cnpj_check_digit(chars: str) -> int:
    # Weights 2..9 from the right, repeating. Each character counts as
    # ord(c) - 48, which is the digit itself for 0-9 and extends to the
    # alphanumeric CNPJ (letters A-Z in the first 12 positions, from July 2026).
    weights = [2, 3, 4, 5, 6, 7, 8, 9]
    total = sum((ord(c) - 48) * weights[i % 8] for i, c in enumerate(reversed(chars)))
    r = total % 11
    return 0 if r < 2 else 11 - r


def is_cnpj(value: str) -> bool:
    """True for a 14-character CNPJ (punctuation allowed) with valid check digits.

    Accepts the numeric form and the alphanumeric form (12 characters 0-9/A-Z
    followed by 2 numeric check digits).
    """
    if not isinstance(value, str):
        return False
    n = _clean_cnpj(value)
    if n is None or n == n[0] * 14:
        return False
    d1 = _cnpj_check_digit(n[:12])
    d2 = _cnpj_check_digit(n[:12] + str(d1))
    return n[12:] == f"{d1}{d2}"


# --------------------------------------------------------------------------- PIX keys

def normalize_phone(value: str) -> str:
    """A Brazilian phone number -> `+55DDNNNNNNNNN`; ValueError otherwise (core.pix_normalize_phone)."""
    raw = value.strip(_SPACE)
    if re.search(r"[^0-9+(). -]", raw) or raw.count("+") > 1 or ("+" in raw and not raw.startswith("+")):
        raise ValueError(N_("Telefone inválido: use apenas números, no formato +55 DDD número."))
    n = cpf.digits(raw)
    if raw.startswith("+") and not n.startswith("55"):
        raise ValueError(N_("Telefone inválido: a chave PIX de telefone deve ser de um número brasileiro (+55)."))
    if len(n) in (12, 13) and n.startswith("55"):
        n = n[2:]
    if len(n) not in (10, 11):
        raise ValueError(N_("Telefone inválido: informe DDD + número (8 ou 9 dígitos)."))
    ddd, number = int(n[:2]), n[2:]
    if ddd not in VALID_DDDS:
        raise ValueError(f"Telefone inválido: o DDD {n[:2]} não existe.")
    if len(number) == 9 and number[0] != "9":
        raise ValueError(N_("Telefone inválido: celulares com 9 dígitos começam com 9."))
    if len(number) == 8 and number[0] not in "2345":
        raise ValueError(N_("Telefone inválido: para celular, inclua o 9 na frente do número."))
    return "+55" + n


def normalize_pix_key(key_type: str, value: str) -> str:
    """Validate a PIX key and return its canonical form (core.pix_normalize_key).

    key_type (case-insensitive): CPF, CNPJ, EMAIL, PHONE, EVP (random key;
    ALEATORIA is accepted as an alias). Canonical forms: CPF and CNPJ as bare
    digits (CNPJ letters upper-case), e-mail lower-case, phone `+55DDNNNNNNNNN`,
    EVP lower-case UUID v4. Raises ValueError with a message the customer can read.
    """
    kind = (key_type or "").strip().upper()
    if kind == "ALEATORIA":
        kind = "EVP"
    if kind not in KEY_TYPES:
        raise ValueError(N_("Tipo de chave PIX inválido: use CPF, CNPJ, e-mail, telefone ou chave aleatória."))
    value = value.strip(_SPACE) if isinstance(value, str) else ""
    if not value:
        raise ValueError(N_("Informe a chave PIX."))

    if kind == "CPF":
        if not cpf.is_valid(value):
            raise ValueError(N_("CPF inválido: confira os 11 dígitos."))
        return cpf.digits(value)
    if kind == "CNPJ":
        if not is_cnpj(value):
            raise ValueError(N_("CNPJ inválido: confira os 14 caracteres."))
        return _clean_cnpj(value)
    if kind == "EMAIL":
        if len(value) > 77:
            raise ValueError(N_("E-mail inválido: a chave PIX de e-mail tem no máximo 77 caracteres."))
        # Lower-cased only once known to be ASCII: some other letters lower to an ASCII one.
        if not _EMAIL_RE.fullmatch(value):
            raise ValueError(N_("E-mail inválido: confira o endereço (ex.: nome@exemplo.com.br)."))
        return value.lower()
    if kind == "PHONE":
        return normalize_phone(value)
    if not _EVP_RE.fullmatch(value):
        raise ValueError(N_("Chave aleatória inválida: deve ter o formato "
                            "xxxxxxxx-xxxx-4xxx-xxxx-xxxxxxxxxxxx (36 caracteres)."))
    return value.lower()


def parse_decimal(value) -> Decimal:
    """Amount from an API: a number, "100.00" or the decimal-comma "100,00"."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, (int, float)):
        # str() of a float is its shortest repr, e.g. 150.1 -> "150.1", not 150.0999…
        return Decimal(str(value))
    text = str(value).strip()
    if "," in text:
        text = text.replace(".", "").replace(",", ".")   # "1.234,56" -> "1234.56"
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
