"""webapp.pix: BR Code vectors (providers.md G.1), generator/parser round trip,
CPF/CNPJ check digits (G.3) and PIX key normalization."""
from decimal import Decimal

import pytest

from webapp.pix import (
    brcode, crc16, is_cnpj, is_cpf, normalize_pix_key, parse_brcode, parse_decimal,
)

MP_SANDBOX_QR = ("00020126580014br.gov.bcb.pix0136b76aa9c2-2ec4-4110-954e-ebfe34f05b61520400005303986"
                 "540512.345802BR5911TE35069Wi056014Begz kGOBJEUte62230519mpqrinter13274105196304")
FORUM_QR = ("00020126330014BR.GOV.BCB.PIX01115794666323452040000530398654041.005802BR"
            "5925CLENILTON CRUZ DE ALENCAR6006MANAUS62070503***6304")


def test_crc_check_value():
    assert crc16("123456789") == "29B1"      # the standard CCITT-FALSE check value


@pytest.mark.parametrize("payload,crc", [(MP_SANDBOX_QR, "2B7C"), (FORUM_QR, "FA88")])
def test_crc_vectors(payload, crc):
    assert crc16(payload) == crc
    parsed = parse_brcode(payload + crc)
    assert parsed.crc == crc


def test_generator_reproduces_the_mercado_pago_vector():
    code = brcode("b76aa9c2-2ec4-4110-954e-ebfe34f05b61", Decimal("12.34"), "TE35069Wi05",
                  "Begz kGOBJEUte", txid="mpqrinter1327410519")
    assert code == MP_SANDBOX_QR + "2B7C"


def test_generator_reproduces_the_forum_vector():
    code = brcode("57946663234", Decimal("1.00"), "CLENILTON CRUZ DE ALENCAR", "MANAUS",
                  gui="BR.GOV.BCB.PIX")
    assert code == FORUM_QR + "FA88"


def test_parse_fields():
    p = parse_brcode(MP_SANDBOX_QR + "2B7C")
    assert p.key == "b76aa9c2-2ec4-4110-954e-ebfe34f05b61"
    assert p.amount == Decimal("12.34")
    assert (p.name, p.city, p.txid) == ("TE35069Wi05", "Begz kGOBJEUte", "mpqrinter1327410519")


@pytest.mark.parametrize("amount", [Decimal("0.01"), Decimal("150"), Decimal("150.10"), Decimal("99999.99"), None])
def test_round_trip(amount):
    code = brcode("+5511987654321", amount, "Exchange Ação Ltda", "São Paulo", txid="dep42")
    p = parse_brcode(code)
    assert p.key == "+5511987654321"
    assert p.amount == (Decimal(amount).quantize(Decimal("0.01")) if amount else None)
    assert p.name == "Exchange Acao Ltda"      # accents folded to ASCII
    assert p.city == "Sao Paulo"
    assert p.txid == "dep42"


def test_round_trip_dynamic_url():
    code = brcode(None, Decimal("10.00"), "BS MARKET", "SAO PAULO", url="pix.example.com/qr/v2/abc")
    p = parse_brcode(code)
    assert p.key is None and p.url == "pix.example.com/qr/v2/abc"
    assert p.fields["01"] == "12"


def test_float_amount_refused():
    with pytest.raises(TypeError):
        brcode("19119119100", 10.5, "A", "B")


@pytest.mark.parametrize("bad,message", [
    (FORUM_QR + "FA89", "CRC"),                                  # wrong CRC
    (FORUM_QR[:-4] + "FA88", "6304"),                            # CRC field missing
    (FORUM_QR.replace("5925CLENILTON", "5930CLENILTON") + "FA88", "BR Code inválido"),   # length lies
    ("00020126", "6304"),
    ("", "vazio"),
    # the invalid QR from the Mercado Pago docs (wrong length and CRC)
    ("00020126580014br.gov.bcb.pix0117john@yourdomain.com5204000053039865406123.455802BR5913Maria Silva"
     "6008Brasilia62070503***6304E2CA", "BR Code inválido"),
])
def test_parse_rejects(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_brcode(bad)


def test_parse_rejects_one_changed_character():
    code = MP_SANDBOX_QR + "2B7C"
    tampered = code.replace("12.34", "12.35")
    with pytest.raises(ValueError, match="CRC"):
        parse_brcode(tampered)


@pytest.mark.parametrize("cpf", ["19119119100", "95749019047", "12345678909", "11144477735",
                                 "52998224725", "529.982.247-25"])
def test_cpf_valid(cpf):
    assert is_cpf(cpf)


@pytest.mark.parametrize("cpf", ["11111111111", "12345678900", "00000000000", "1234567890",
                                 "123456789012", "5299822472a", ""])
def test_cpf_invalid(cpf):
    assert not is_cpf(cpf)


@pytest.mark.parametrize("cnpj", ["11222333000181", "11.222.333/0001-81", "00000000000191",
                                  "12345678000195", "12.ABC.345/01DE-35"])   # last: alphanumeric CNPJ
def test_cnpj_valid(cnpj):
    assert is_cnpj(cnpj)


@pytest.mark.parametrize("cnpj", ["11222333000182", "11111111111111", "1122233300018", "12ABC34501DE36", ""])
def test_cnpj_invalid(cnpj):
    assert not is_cnpj(cnpj)


@pytest.mark.parametrize("kind,value,expected", [
    ("CPF", "191.191.191-00", "19119119100"),
    ("cpf", " 52998224725 ", "52998224725"),
    ("CNPJ", "11.222.333/0001-81", "11222333000181"),
    ("EMAIL", "Cliente@Example.com.br", "cliente@example.com.br"),
    ("PHONE", "(11) 98765-4321", "+5511987654321"),
    ("PHONE", "+55 21 3234-5678", "+552132345678"),
    ("PHONE", "5511987654321", "+5511987654321"),
    ("EVP", "B76AA9C2-2EC4-4110-954E-EBFE34F05B61", "b76aa9c2-2ec4-4110-954e-ebfe34f05b61"),
    ("ALEATORIA", "b76aa9c2-2ec4-4110-954e-ebfe34f05b61", "b76aa9c2-2ec4-4110-954e-ebfe34f05b61"),
])
def test_normalize_pix_key(kind, value, expected):
    assert normalize_pix_key(kind, value) == expected


@pytest.mark.parametrize("kind,value,message", [
    ("CPF", "12345678900", "CPF inválido"),
    ("CNPJ", "11222333000182", "CNPJ inválido"),
    ("EMAIL", "cliente@", "E-mail inválido"),
    ("EMAIL", "a" * 70 + "@example.com", "77"),
    ("PHONE", "+1 415 555 0100", r"\+55"),
    ("PHONE", "(20) 98765-4321", "DDD 20"),
    ("PHONE", "11 8765-432", "DDD"),
    ("PHONE", "(11) 88765-4321", "começam com 9"),
    ("EVP", "b76aa9c2-2ec4-1110-954e-ebfe34f05b61", "aleatória"),      # not version 4
    ("EVP", "not-a-uuid", "aleatória"),
    ("PIX", "x", "Tipo de chave"),
    ("CPF", "   ", "Informe"),
])
def test_normalize_pix_key_rejects(kind, value, message):
    with pytest.raises(ValueError, match=message):
        normalize_pix_key(kind, value)


@pytest.mark.parametrize("raw,expected", [
    ("100,00", Decimal("100.00")), ("1.234,56", Decimal("1234.56")), (100, Decimal("100")),
    (150.1, Decimal("150.1")), ("58.80", Decimal("58.80")),
])
def test_parse_decimal(raw, expected):
    assert parse_decimal(raw) == expected
