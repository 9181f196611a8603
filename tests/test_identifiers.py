"""CPF check digits and PIX keys: one rule in SQL (sql/identifiers.sql), one mirror in Python for
the forms (webapp/cpf.py, webapp/pix.py). The same inputs go through both and must get the same
answer: valid or not, and the same canonical key."""
import os

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from tests.conftest import TEMPLATE, url_for_db
from webapp import cpf
from webapp.pix import VALID_DDDS, normalize_pix_key

CPF_VECTORS = [
    # valid (providers.md G.3), bare and formatted
    "19119119100", "95749019047", "12345678909", "11144477735", "52998224725",
    "529.982.247-25", "529 982 247 25", "111.444.777-35",
    # wrong check digits
    "12345678900", "52998224724", "529.982.247-26",
    # one repeated digit (their check digits add up)
    "00000000000", "11111111111", "111.111.111-11", "99999999999",
    # wrong length
    "", "1234567890", "123456789091", "5299822472", "529.982.247-2",
    # characters the rule refuses
    "529.982.247/25", "529982247-25a", "52998224725\n", "\t52998224725", "５２９９８２２４７２５",
    "52998224725²", "+5299822472",
]

KEY_VECTORS = [
    ("CPF", "529.982.247-25"), ("CPF", " 52998224725 "), ("CPF", "52998224724"), ("CPF", "11111111111"),
    ("CNPJ", "11.222.333/0001-81"), ("CNPJ", "11222333000180"), ("CNPJ", "12.ABC.345/01DE-35"),
    ("CNPJ", "12abc34501de35"), ("CNPJ", "11111111111111"), ("CNPJ", "ıı222333000181"),
    ("EMAIL", "Maria.Silva@Exemplo.com.br"), ("EMAIL", "maria@exemplo"), ("EMAIL", "maria@-exemplo.com"),
    ("EMAIL", "\u212aelvin@exemplo.com"), ("EMAIL", "a" * 70 + "@ex.com"), ("EMAIL", "a" * 71 + "@ex.com"),
    ("PHONE", "+55 (11) 91234-5678"), ("PHONE", "11912345678"), ("PHONE", "5511912345678"),
    ("PHONE", "1133334444"), ("PHONE", "+1 212 555 1234"), ("PHONE", "(20) 91234-5678"),
    ("PHONE", "11 81234-5678"), ("PHONE", "11 6123-4567"), ("PHONE", "11+912345678"), ("PHONE", "+5511912345678+"),
    ("PHONE", "11\t912345678"),
    ("EVP", "123E4567-E89B-42D3-A456-426614174000"), ("EVP", "123e4567-e89b-12d3-a456-426614174000"),
    ("ALEATORIA", "123e4567-e89b-42d3-a456-426614174000"), ("evp", "123e4567-e89b-42d3-c456-426614174000"),
    ("BOLETO", "123"), ("", "x"), ("EMAIL", "   "), ("CPF", ""),
]


@pytest.fixture(scope="module")
def conn(admin_url, template_url):
    """One database for the module (Hypothesis runs hundreds of examples on it; nothing is written)."""
    name = f"bsm_identifiers_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"drop database if exists {name}")
        admin.execute(f"create database {name} template {TEMPLATE}")
    with psycopg.connect(url_for_db(admin_url, name), autocommit=True, row_factory=dict_row) as c:
        yield c


def sql_cpf(conn, value):
    return conn.execute("select core.is_valid_cpf(%s) as ok, core.cpf_digits(%s) as digits",
                        (value, value)).fetchone()


def sql_key(conn, key_type, value):
    """The canonical key, or None when the database refuses it (always with BSV01)."""
    try:
        return conn.execute("select core.pix_normalize_key(%s, %s) as key", (key_type, value)).fetchone()["key"]
    except psycopg.Error as exc:
        assert exc.sqlstate == "BSV01", exc
        return None


def python_key(key_type, value):
    try:
        return normalize_pix_key(key_type, value)
    except ValueError:
        return None


def assert_cpf_agrees(conn, value):
    row = sql_cpf(conn, value)
    assert row["ok"] is cpf.is_valid(value), value
    if row["ok"]:
        assert row["digits"] == cpf.digits(value) == normalize_pix_key("CPF", value)


@pytest.mark.parametrize("value", CPF_VECTORS)
def test_cpf_vectors_agree(conn, value):
    assert_cpf_agrees(conn, value)


def test_cpf_vectors_mean_what_they_say(conn):
    """The vectors are not all refused (or all accepted) by both: the agreement is not vacuous."""
    valid = {v for v in CPF_VECTORS if cpf.is_valid(v)}
    assert valid == {"19119119100", "95749019047", "12345678909", "11144477735", "52998224725",
                     "529.982.247-25", "529 982 247 25", "111.444.777-35"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_cpf_random_eleven_digits_agree(conn, value):
    assert_cpf_agrees(conn, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_cpf_with_its_check_digits_is_valid_in_both(conn, first9):
    """Random CPFs made valid by construction (check digits appended), formatted or bare."""
    value = first9 + cpf.check_digits(first9)
    if value == value[0] * 11:
        return
    for written in (value, cpf.formatted(value)):
        assert sql_cpf(conn, written)["ok"] is True and cpf.is_valid(written)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="0123456789.- /\tx٣", max_size=16))
def test_cpf_random_text_agrees(conn, value):
    assert_cpf_agrees(conn, value)


@pytest.mark.parametrize("key_type,value", KEY_VECTORS)
def test_pix_key_vectors_agree(conn, key_type, value):
    assert sql_key(conn, key_type, value) == python_key(key_type, value)


def test_pix_key_vectors_are_not_all_refused():
    accepted = [(t, v) for t, v in KEY_VECTORS if python_key(t, v) is not None]
    assert len(accepted) == 13 and python_key("PHONE", "+55 (11) 91234-5678") == "+5511912345678"


def test_phone_area_codes_agree(conn):
    """All 100 two-digit area codes: the Python list and core.pix_phone_area_codes are the same."""
    sql_codes = set(conn.execute("select core.pix_phone_area_codes() as codes").fetchone()["codes"])
    assert sql_codes == set(VALID_DDDS)
    for ddd in range(10, 100):
        assert sql_key(conn, "PHONE", f"{ddd}912345678") == python_key("PHONE", f"{ddd}912345678")


KEY_TEXT = {
    "CPF": st.text(alphabet="0123456789.- ", max_size=15),
    "CNPJ": st.text(alphabet="0123456789ABCabc./- ı", max_size=19),
    "EMAIL": st.from_regex(r"[a-zA-Z0-9.+_-]{0,6}@?[a-zA-Z0-9-]{0,4}(\.[a-zA-Z-]{0,3}){0,2}", fullmatch=True),
    "PHONE": st.text(alphabet="0123456789+()-. ", max_size=17),
    "EVP": st.uuids().map(str) | st.uuids(version=4).map(lambda u: str(u).upper())
           | st.text(alphabet="0123456789abcdefABCDEF-", min_size=36, max_size=36),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(KEY_TEXT)).flatmap(lambda kind: st.tuples(st.just(kind), KEY_TEXT[kind])))
@example(("PHONE", "+55 21 3333-4444"))
@example(("EVP", "123e4567-e89b-42d3-a456-426614174000"))
def test_pix_keys_random_agree(conn, case):
    key_type, value = case
    assert sql_key(conn, key_type, value) == python_key(key_type, value)
