"""webapp.chain: address checks per network, with the published test vectors."""
from __future__ import annotations

import hashlib

import pytest

from webapp.chain import btc_p2wpkh_address, eip55, evm_address, keccak256, tron_address, validate_address


def test_keccak_is_ethereum_keccak_not_sha3():
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert hashlib.sha3_256(b"").hexdigest() != keccak256(b"").hex()


# ---------------------------------------------------------------- BTC

# BIP-173 / BIP-350 valid mainnet vectors that we accept (v0 any; v1 with a 32-byte program).
BTC_VALID = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),  # P2WPKH
    ("bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",) * 2,  # P2WSH (BIP-173)
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",) * 2,  # P2TR (BIP-350)
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",) * 2,  # P2PKH (genesis block)
    ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",) * 2,  # P2SH (BIP-13 example)
    ("  bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 ", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
]

BTC_INVALID = [
    # BIP-350 invalid: wrong checksum algorithm for the witness version
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # v1 with bech32
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # v0 with bech32m
    "bc1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",  # v0 with bech32m
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # invalid data character
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # witness version 17
    "bc1pw5dgrnzv",  # program of 1 byte
    "bc1gmk9yu",  # empty data part
    "bc1qW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",  # mixed case
    # valid BIP-350 strings we refuse on purpose: v1 with 40 bytes, v16, v2 (not spendable today)
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
    "BC1SW50QGDZ25J",
    "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
    # testnet and broken base58
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
    "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb",  # last character changed
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7Divf0a",  # 0 is not base58
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "",
]


@pytest.mark.parametrize("address,normal", BTC_VALID)
def test_btc_valid(address, normal):
    assert validate_address("BTC", "BTC", address) == normal


@pytest.mark.parametrize("address", BTC_INVALID)
def test_btc_invalid(address):
    with pytest.raises(ValueError) as exc:
        validate_address("BTC", "BTC", address)
    assert "Bitcoin" in str(exc.value)


def test_btc_generated_address_is_valid():
    raw = hashlib.sha256(b"x").digest()[:20]
    address = btc_p2wpkh_address(raw)
    assert address.startswith("bc1q") and validate_address("btc", "btc", address) == address


# ---------------------------------------------------------------- EVM (EIP-55)

EIP55_EXAMPLES = [  # from the EIP: all caps, all lower, normal
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55_EXAMPLES)
def test_eip55_examples_are_their_own_checksum(address):
    assert eip55(address) == address


@pytest.mark.parametrize("coin,network,label", [("ETH", "ETH", "Ethereum (ERC20)"),
                                                ("USDT", "ETH", "Ethereum (ERC20)"),
                                                ("USDT", "BSC", "BNB Smart Chain (BEP20)")])
def test_evm_networks(coin, network, label):
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert validate_address(coin, network, good) == good
    # all lower / all upper: no checksum to check, normalised to the checksummed spelling
    assert validate_address(coin, network, good.lower()) == good
    assert validate_address(coin, network, "0x" + good[2:].upper()) == good
    for bad in ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",  # one letter's case flipped
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",  # 39 digits
                "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # no 0x
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
                "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"):
        with pytest.raises(ValueError) as exc:
            validate_address(coin, network, bad)
        assert label in str(exc.value)


def test_evm_address_helper():
    assert evm_address(bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")) == \
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


# ---------------------------------------------------------------- TRON

def test_tron():
    usdt_contract = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"  # the USDT TRC20 contract, a real address
    assert validate_address("USDT", "TRX", usdt_contract) == usdt_contract
    raw = bytes.fromhex("a614f803b6fd780986a42c78ec9c7f77e6ded13c")
    assert tron_address(raw) == usdt_contract
    for bad in ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u",  # checksum
                "tR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",  # base58 is case-sensitive
                "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",  # base58check but version 0x00
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6"):
        with pytest.raises(ValueError) as exc:
            validate_address("USDT", "TRX", bad)
        assert "Tron (TRC20)" in str(exc.value)


# ---------------------------------------------------------------- coin / network / memo

def test_coin_network_and_memo_rules():
    with pytest.raises(ValueError, match="Moeda não suportada"):
        validate_address("DOGE", "DOGE", "D8...")
    with pytest.raises(ValueError, match="Tron"):
        validate_address("BTC", "TRX", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")  # TRX is not a BTC network here
    with pytest.raises(ValueError, match="não usa memo"):
        validate_address("USDT", "TRX", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", memo="123")
    assert validate_address("USDT", "TRX", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", memo="  ") == \
        "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    with pytest.raises(ValueError, match="Informe o endereço na rede Ethereum"):
        validate_address("ETH", "ETH", "   ")
