"""On-chain address checks for the coins and networks we move (BTC, ETH, USDT).

`validate_address(coin, network, address, memo=None)` returns the address in its
normal form or raises `ValueError` with a message in Portuguese that names the
network, ready to show next to the form field. Network names are Binance's
(`capital/config/getall` → `networkList[].network`):

| coin | network | format                                                        |
|------|---------|---------------------------------------------------------------|
| BTC  | BTC     | mainnet only: base58check P2PKH (1…) / P2SH (3…), bech32 v0   |
|      |         | P2WPKH/P2WSH (bc1q…, BIP-173), bech32m v1 P2TR (bc1p…, BIP-350)|
| ETH  | ETH     | 0x + 40 hex, EIP-55 checksum (see below)                      |
| USDT | ETH     | same as ETH (ERC20)                                           |
| USDT | BSC     | same as ETH (BEP20)                                           |
| USDT | TRX     | base58check, 21 bytes, version byte 0x41 ("T…", TRC20)        |

EIP-55: an all-lowercase or all-uppercase hex body carries no checksum and is
accepted; a mixed-case body must match the checksum exactly. The normal form of
an EVM address is its checksummed spelling; bech32 addresses are lower-cased;
base58 addresses are case-sensitive and returned as given (trimmed).

None of these networks takes a memo/tag, so a non-empty memo is refused.

Libraries: `bech32m` (Pieter Wuille's BIP-350 reference code, packaged),
`base58` (base58check), `pycryptodome` (keccak-256; Python's hashlib only has
SHA3-256, whose padding differs from Ethereum's keccak).
The `*_address` helpers build valid addresses from raw bytes (the Binance
emulator uses them for deposit addresses).
"""
from __future__ import annotations

import re

import base58
import bech32m
from Crypto.Hash import keccak

#: coin → networks we accept for it (Binance network codes).
NETWORKS: dict[str, tuple[str, ...]] = {
    "BTC": ("BTC",),
    "ETH": ("ETH",),
    "USDT": ("TRX", "ETH", "BSC"),
}

#: How a network is called in messages for people.
NETWORK_LABELS = {
    "BTC": "Bitcoin",
    "ETH": "Ethereum (ERC20)",
    "BSC": "BNB Smart Chain (BEP20)",
    "TRX": "Tron (TRC20)",
}

EVM_NETWORKS = frozenset({"ETH", "BSC"})
BTC_HRP = "bc"
BTC_P2PKH_VERSION = 0x00
BTC_P2SH_VERSION = 0x05
TRON_VERSION = 0x41

_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BASE58_CHARS = re.compile(r"^[1-9A-HJ-NP-Za-km-z]+$")


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def eip55(address_hex: str) -> str:
    """The EIP-55 spelling of `0x` + 40 hex digits (any case)."""
    body = address_hex[2:].lower() if address_hex[:2] in ("0x", "0X") else address_hex.lower()
    if not re.fullmatch(r"[0-9a-f]{40}", body):
        raise ValueError("an EVM address is 40 hex digits")
    digest = keccak256(body.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c
                          for i, c in enumerate(body))


def evm_address(raw20: bytes) -> str:
    """Checksummed EVM address for 20 raw bytes."""
    if len(raw20) != 20:
        raise ValueError("an EVM address is 20 bytes")
    return eip55("0x" + raw20.hex())


def tron_address(raw20: bytes) -> str:
    """TRON base58check address ("T…") for a 20-byte account id."""
    if len(raw20) != 20:
        raise ValueError("a TRON address is 20 bytes after the 0x41 prefix")
    return base58.b58encode_check(bytes([TRON_VERSION]) + raw20).decode("ascii")


def btc_p2wpkh_address(raw20: bytes) -> str:
    """Mainnet native segwit v0 address (bc1q…) for a 20-byte key hash."""
    if len(raw20) != 20:
        raise ValueError("a P2WPKH program is 20 bytes")
    return bech32m.encode(BTC_HRP, 0, raw20)


def _label(network: str) -> str:
    return NETWORK_LABELS.get(network, network)


def _btc(address: str) -> str:
    label = _label("BTC")
    if address[:3].lower() == "bc1":
        try:
            witver, program = bech32m.decode(BTC_HRP, address)
        except bech32m.DecodeError:
            raise ValueError(f"Endereço inválido para a rede {label}: o código de verificação "
                             "bech32/bech32m não confere.") from None
        if witver == 0 or (witver == 1 and len(program) == 32):
            return address.lower()
        raise ValueError(f"Endereço não suportado na rede {label}: só aceitamos P2WPKH, P2WSH (bc1q…) "
                         "e Taproot (bc1p…).")
    if address[:1] in ("1", "3"):
        try:
            payload = base58.b58decode_check(address) if _BASE58_CHARS.match(address) else b""
        except ValueError:
            payload = b""
        if len(payload) == 21 and payload[0] in (BTC_P2PKH_VERSION, BTC_P2SH_VERSION):
            return address
        raise ValueError(f"Endereço inválido para a rede {label}: o código de verificação base58 "
                         "não confere.")
    raise ValueError(f"Endereço inválido para a rede {label}: um endereço Bitcoin da rede principal "
                     "começa com 1, 3 ou bc1.")


def _evm(network: str, address: str) -> str:
    label = _label(network)
    if not _HEX40.match(address):
        raise ValueError(f"Endereço inválido para a rede {label}: deve ser 0x seguido de 40 dígitos "
                         "hexadecimais.")
    body = address[2:]
    checksummed = eip55(address)
    if body == body.lower() or body == body.upper():
        return checksummed  # no checksum to check (EIP-55)
    if address != checksummed:
        raise ValueError(f"Endereço inválido para a rede {label}: as maiúsculas e minúsculas não "
                         "conferem com o checksum EIP-55 (confira se o endereço foi copiado inteiro).")
    return address


def _tron(address: str) -> str:
    label = _label("TRX")
    payload = b""
    if address.startswith("T") and _BASE58_CHARS.match(address):
        try:
            payload = base58.b58decode_check(address)
        except ValueError:
            payload = b""
    if len(payload) == 21 and payload[0] == TRON_VERSION:
        return address
    raise ValueError(f"Endereço inválido para a rede {label}: um endereço Tron começa com T e o "
                     "código de verificação base58 deve conferir.")


def validate_address(coin: str, network: str, address: str, memo: str | None = None) -> str:
    """The normal form of `address` on `network` for `coin`, or ValueError (Portuguese)."""
    coin = (coin or "").strip().upper()
    network = (network or "").strip().upper()
    if coin not in NETWORKS:
        raise ValueError(f"Moeda não suportada: {coin or '(vazia)'}.")
    if network not in NETWORKS[coin]:
        names = ", ".join(_label(n) for n in NETWORKS[coin])
        raise ValueError(f"A rede {_label(network) if network else '(vazia)'} não é aceita para {coin}; "
                         f"use: {names}.")
    if memo is not None and memo.strip():
        raise ValueError(f"A rede {_label(network)} não usa memo/tag; deixe o campo vazio.")
    address = (address or "").strip()
    if not address:
        raise ValueError(f"Informe o endereço na rede {_label(network)}.")
    if network == "BTC":
        return _btc(address)
    if network in EVM_NETWORKS:
        return _evm(network, address)
    return _tron(address)


__all__ = ["NETWORKS", "NETWORK_LABELS", "btc_p2wpkh_address", "eip55", "evm_address", "keccak256",
           "tron_address", "validate_address"]
