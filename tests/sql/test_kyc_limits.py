"""KYC in SQL: CPF check digits, level 1 data rules, and every limit of every level enforced at the edge."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest

VALID_CPFS = ["19119119100", "95749019047", "12345678909", "11144477735", "52998224725", "529.982.247-25"]
INVALID_CPFS = ["11111111111", "12345678900", "00000000000", "5299822472", "529982247250", "52998224724",
                "abc98224725", "", None]
DAILY_LIMITS = ["daily_deposit_brl", "daily_withdrawal_brl", "daily_market_brl", "daily_p2p_brl"]
CENT = Decimal("0.01")


def new_customer(owner, email="carla@example.com", level=0) -> int:
    user_id = owner.execute("select api.register_user(%s, %s, %s) as id",
                            (email, "pbkdf2:sha256:1000$salt$" + "0" * 40, "Carla Dias")).fetchone()["id"]
    owner.execute("update core.users set kyc_level = %s where id = %s", (level, user_id))
    return user_id


def limits(owner) -> dict:
    return {r["kyc_level"]: r for r in owner.execute("select * from core.kyc_limits order by kyc_level")}


def sqlstate(exc_info) -> str:
    return exc_info.value.diag.sqlstate


@pytest.mark.parametrize("cpf", VALID_CPFS)
def test_valid_cpf(owner, cpf):
    from webapp.cpf import is_valid
    assert owner.execute("select core.is_valid_cpf(%s) as ok", (cpf,)).fetchone()["ok"] is True
    assert is_valid(cpf)


@pytest.mark.parametrize("cpf", INVALID_CPFS)
def test_invalid_cpf(owner, cpf):
    from webapp.cpf import is_valid
    assert owner.execute("select core.is_valid_cpf(%s) as ok", (cpf,)).fetchone()["ok"] is False
    assert not is_valid(cpf)


def test_the_limits_table_is_what_the_design_says(owner):
    table = limits(owner)
    assert table[0]["daily_withdrawal_brl"] == Decimal("500.00")
    assert table[1]["per_trade_max_brl"] == Decimal("5000.00")
    assert table[2]["daily_deposit_brl"] == Decimal("200000.00")


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("limit_name", DAILY_LIMITS)
def test_daily_limit_at_the_edge(owner, level, limit_name):
    user_id = new_customer(owner, level=level)
    limit = limits(owner)[level][limit_name]
    used = (limit / 2).quantize(CENT)
    call = "select core.enforce_daily_limit(%s, %s, %s, %s)"
    # exactly at the limit: fine, from nothing or with part already used today
    owner.execute(call, (user_id, limit_name, 0, limit))
    owner.execute(call, (user_id, limit_name, used, limit - used))
    # one centavo over: BSL01 on the amount field, with how to raise it in the hint
    for already, amount in ((0, limit + CENT), (used, limit - used + CENT)):
        with pytest.raises(psycopg.Error) as exc:
            owner.execute(call, (user_id, limit_name, already, amount))
        assert sqlstate(exc) == "BSL01"
        assert exc.value.diag.column_name == "amount"
        assert exc.value.diag.message_hint == limits(owner)[level]["how_to_raise"]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_per_trade_limit_at_the_edge(owner, level):
    user_id = new_customer(owner, level=level)
    limit = limits(owner)[level]["per_trade_max_brl"]
    owner.execute("select core.enforce_trade_limit(%s, %s)", (user_id, limit))
    with pytest.raises(psycopg.Error) as exc:
        owner.execute("select core.enforce_trade_limit(%s, %s)", (user_id, limit + CENT))
    assert sqlstate(exc) == "BSL01"


def test_kyc_data_raises_to_level_1_and_limits_follow(owner):
    user_id = new_customer(owner)
    over_level0 = limits(owner)[0]["daily_withdrawal_brl"] + CENT
    with pytest.raises(psycopg.Error):
        owner.execute("select core.enforce_daily_limit(%s, 'daily_withdrawal_brl', 0, %s)", (user_id, over_level0))
    level = owner.execute("select api.submit_kyc_data(%s, 'Carla Dias Lima', '529.982.247-25', '1990-05-01', "
                          "'Rua das Flores, 10, São Paulo') as level", (user_id,)).fetchone()["level"]
    assert level == 1
    owner.execute("select core.enforce_daily_limit(%s, 'daily_withdrawal_brl', 0, %s)", (user_id, over_level0))
    profile = owner.execute("select * from core.kyc_profiles where user_id = %s", (user_id,)).fetchone()
    assert profile["cpf"] == "52998224725"
    kinds = [r["kind"] for r in owner.execute("select kind from core.security_events where user_id = %s", (user_id,))]
    assert kinds == ["kyc_data_confirmed"]


def test_kyc_data_refusals(owner):
    carla = new_customer(owner)
    dani = new_customer(owner, "dani@example.com")
    owner.execute("select api.submit_kyc_data(%s, 'Carla Dias', '52998224725', '1990-05-01', 'Rua A, 10')", (carla,))
    call = "select api.submit_kyc_data(%s, %s, %s, %s, %s)"
    cases = [
        (("Dani Reis", "52998224725", date(1990, 1, 1), "Rua B, 20"), "cpf"),       # CPF of another customer
        (("Dani Reis", "12345678900", date(1990, 1, 1), "Rua B, 20"), "cpf"),       # wrong check digits
        (("Dani", "11144477735", date(1990, 1, 1), "Rua B, 20"), "full_name"),      # not a full name
        (("Dani Reis", "11144477735", date(2100, 1, 1), "Rua B, 20"), "birth_date"),
        (("Dani Reis", "11144477735", date(1990, 1, 1), "Rua"), "address"),
    ]
    for args, field in cases:
        with pytest.raises(psycopg.Error) as exc:
            owner.execute(call, (dani, *args))
        assert sqlstate(exc) == "BSV01" and exc.value.diag.column_name == field, (args, exc.value)
    assert owner.execute("select kyc_level from core.users where id = %s", (dani,)).fetchone()["kyc_level"] == 0


def test_minimum_age_edge(owner):
    user_id = new_customer(owner)
    today = owner.execute("select current_date as d").fetchone()["d"]
    try:
        eighteen = today.replace(year=today.year - 18)
    except ValueError:  # 29 February
        eighteen = today.replace(year=today.year - 18, day=28)
    with pytest.raises(psycopg.Error) as exc:
        owner.execute("select api.submit_kyc_data(%s, 'Carla Dias', '11144477735', %s::date + 1, 'Rua A, 10')",
                      (user_id, eighteen))
    assert sqlstate(exc) == "BSV01" and exc.value.diag.column_name == "birth_date"
    owner.execute("select api.submit_kyc_data(%s, 'Carla Dias', '11144477735', %s, 'Rua A, 10')", (user_id, eighteen))


def test_cpf_is_unique_in_the_table(owner):
    a = new_customer(owner)
    b = new_customer(owner, "dani@example.com")
    owner.execute("insert into core.kyc_profiles (user_id, full_name, cpf, birth_date, address) "
                  "values (%s, 'Carla Dias', '11144477735', '1990-01-01', 'Rua A, 10')", (a,))
    with pytest.raises(psycopg.errors.UniqueViolation):
        owner.execute("insert into core.kyc_profiles (user_id, full_name, cpf, birth_date, address) "
                      "values (%s, 'Dani Reis', '11144477735', '1990-01-01', 'Rua B, 20')", (b,))


def test_new_functions_are_definer_pinned_commented_and_not_public(owner):
    rows = owner.execute("""
        select p.oid::regprocedure::text as fn, p.prosecdef, p.proconfig, obj_description(p.oid, 'pg_proc') as comment,
               has_function_privilege('public', p.oid, 'execute') as public_exec,
               has_function_privilege('exchange_app', p.oid, 'execute')
                 or has_function_privilege('exchange_worker', p.oid, 'execute') as app_exec
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('api', 'admin') and p.proname = any(%s)""", ([
        "get_twofactor", "begin_totp_enrolment", "confirm_totp_enrolment", "verify_totp", "list_recovery_codes",
        "use_recovery_code", "disable_totp", "record_twofactor_failure", "change_password", "get_password_hash",
        "list_login_events", "list_security_events", "list_kyc_limits", "get_kyc", "submit_kyc_data",
        "submit_kyc_documents", "get_kyc_document", "dashboard", "list_kyc_submissions", "get_kyc_submission",
        "review_kyc", "search_users", "get_customer", "customer_balances", "customer_history", "list_audit_log",
        "list_unsent_notifications", "mark_notification_emailed"],)).fetchall()
    assert len(rows) == 28
    for r in rows:
        assert r["prosecdef"], r["fn"]
        assert r["proconfig"] and any(c.startswith("search_path=") for c in r["proconfig"]), r["fn"]
        assert r["comment"], r["fn"]
        assert not r["public_exec"] and r["app_exec"], r["fn"]
