-- identifiers.sql: Brazilian identifiers, each rule written once for every domain.
--
-- CPF check digits (KYC data, CPF withdrawal keys, the payer CPF a provider
-- reports), CNPJ check digits and the canonical form of a PIX key (withdrawals
-- and their destination list). Security invoker helpers in core, called by
-- the api/admin functions of sql/kyc.sql, sql/withdrawals.sql, sql/deposits.sql
-- and sql/p2p/. The forms mirror them in Python (webapp/cpf.py, webapp/pix.py);
-- tests/test_identifiers.py runs both over the same inputs and requires them to agree.

-- ---------------------------------------------------------------------------
-- CPF (providers.md G.3)
-- ---------------------------------------------------------------------------

create or replace function core.cpf_digits(cpf text) returns text
language sql immutable as $$
  select nullif(regexp_replace(coalesce(cpf, ''), '[^0-9]', '', 'g'), '')
$$;
comment on function core.cpf_digits(text) is
  'A CPF as stored: its digits with the punctuation dropped (123.456.789-09 -> 12345678909), NULL when there are none. Does not check it (core.is_valid_cpf does).';

create or replace function core.cpf_check_digits(first_nine text) returns text
language sql immutable strict as $$
  -- d1 = (Σ digit[i]·(10−i)) · 10 mod 11 (10 -> 0); d2 the same over the nine plus d1, weights 11..2.
  with d1 as (
    select sum(substr(first_nine, i, 1)::int * (11 - i)) * 10 % 11 % 10 as v from generate_series(1, 9) i
  )
  select d1.v::text
         || ((sum(substr(first_nine, i, 1)::int * (12 - i)) + d1.v * 2) * 10 % 11 % 10)::text
  from d1, generate_series(1, 9) i
  group by d1.v
$$;
comment on function core.cpf_check_digits(text) is
  'The two check digits of the first nine digits of a CPF (module 11, weights 10..2 then 11..2; a 10 becomes 0).';

create or replace function core.is_valid_cpf(cpf text) returns boolean
language sql immutable as $$
  -- Only digits and the usual separators (123.456.789-09) are accepted.
  select coalesce(cpf ~ '^[0-9. -]+$'
                  and length(core.cpf_digits(cpf)) = 11
                  and core.cpf_digits(cpf) <> repeat(left(core.cpf_digits(cpf), 1), 11)
                  and right(core.cpf_digits(cpf), 2) = core.cpf_check_digits(left(core.cpf_digits(cpf), 9)),
                  false)
$$;
comment on function core.is_valid_cpf(text) is
  'True when a CPF (digits, optionally with dots, a dash and spaces) has 11 digits, is not one repeated digit and its two check digits are right (providers.md G.3). Python mirror: webapp/cpf.py is_valid.';

-- ---------------------------------------------------------------------------
-- CNPJ
-- ---------------------------------------------------------------------------


create or replace function core.cnpj_check_digit(chars text) returns int
language plpgsql immutable strict as $$
declare
  v_total int := 0;
  v_len int := length(chars);
  v_rest int;
begin
  -- Weights 2..9 from the right, repeating; each character counts as its
  -- code minus 48 (the digit itself, and the letters of the alphanumeric CNPJ).
  for i in 1..v_len loop
    v_total := v_total + (ascii(substr(chars, v_len - i + 1, 1)) - 48) * (2 + (i - 1) % 8);
  end loop;
  v_rest := v_total % 11;
  return case when v_rest < 2 then 0 else 11 - v_rest end;
end
$$;
comment on function core.cnpj_check_digit(text) is 'One CNPJ check digit of the characters given (module 11, weights 2..9 from the right).';

create or replace function core.cnpj_clean(cnpj text) returns text
language sql immutable as $$
  -- Only ASCII letters count: upper() of some other letters (the dotless ı) would give an ASCII one.
  select case when v ~ '^[0-9A-Za-z]{12}[0-9]{2}$' then upper(v) end
  from regexp_replace(coalesce(cnpj, ''), '[./ \t\n\r\f\v-]', '', 'g') v
$$;
comment on function core.cnpj_clean(text) is
  'A CNPJ without its punctuation (dots, slash, dash, spaces) and with its letters upper-case, when it has the shape of one (12 characters 0-9/A-Z, then 2 digits); NULL otherwise.';

create or replace function core.is_valid_cnpj(cnpj text) returns boolean
language plpgsql immutable as $$
declare
  v text := core.cnpj_clean(cnpj);
  v_dv1 int;
begin
  if v is null or v ~ '^(.)\1{13}$' then
    return false;
  end if;
  v_dv1 := core.cnpj_check_digit(substr(v, 1, 12));
  return substr(v, 13, 2) = v_dv1::text || core.cnpj_check_digit(substr(v, 1, 12) || v_dv1::text)::text;
end
$$;
comment on function core.is_valid_cnpj(text) is
  'True for a CNPJ (14 characters, numeric or the alphanumeric form, punctuation allowed) whose two check digits are right. Python mirror: webapp/pix.py is_cnpj.';

-- ---------------------------------------------------------------------------
-- PIX keys (providers.md G.1: CPF, CNPJ, e-mail, +55 phone, random EVP key)
-- ---------------------------------------------------------------------------

create or replace function core.pix_phone_area_codes() returns int[]
language sql immutable as $$
  -- Area codes (DDD) in use in Brazil (Anatel): a phone key with any other is a typo.
  select array[11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 24, 27, 28, 31, 32, 33, 34, 35, 37, 38,
               41, 42, 43, 44, 45, 46, 47, 48, 49, 51, 53, 54, 55, 61, 62, 63, 64, 65, 66, 67, 68, 69,
               71, 73, 74, 75, 77, 79, 81, 82, 83, 84, 85, 86, 87, 88, 89,
               91, 92, 93, 94, 95, 96, 97, 98, 99]
$$;
comment on function core.pix_phone_area_codes() is 'The Brazilian area codes (DDD) in use, for phone PIX keys.';

create or replace function core.pix_normalize_phone(phone text) returns text
language plpgsql immutable as $$
declare
  v_digits text := regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g');
  v_number text;
begin
  if phone ~ '[^0-9+(). -]' or phone ~ '[+].*[+]' or position('+' in phone) > 1 then
    raise exception 'Telefone inválido: use apenas números, no formato +55 DDD número.' using errcode = 'BSV01', column = 'pix_key';
  end if;
  if phone like '+%' and v_digits not like '55%' then
    raise exception 'Telefone inválido: a chave PIX de telefone deve ser de um número brasileiro (+55).'
      using errcode = 'BSV01', column = 'pix_key';
  end if;
  if length(v_digits) in (12, 13) and v_digits like '55%' then
    v_digits := substr(v_digits, 3);
  end if;
  if length(v_digits) not in (10, 11) then
    raise exception 'Telefone inválido: informe DDD + número (8 ou 9 dígitos).' using errcode = 'BSV01', column = 'pix_key';
  end if;
  if not left(v_digits, 2)::int = any (core.pix_phone_area_codes()) then
    raise exception 'Telefone inválido: o DDD % não existe.', left(v_digits, 2) using errcode = 'BSV01', column = 'pix_key';
  end if;
  v_number := substr(v_digits, 3);
  if length(v_number) = 9 and v_number !~ '^9' then
    raise exception 'Telefone inválido: celulares com 9 dígitos começam com 9.' using errcode = 'BSV01', column = 'pix_key';
  end if;
  if length(v_number) = 8 and v_number !~ '^[2-5]' then
    raise exception 'Telefone inválido: para celular, inclua o 9 na frente do número.' using errcode = 'BSV01', column = 'pix_key';
  end if;
  return '+55' || v_digits;
end
$$;
comment on function core.pix_normalize_phone(text) is
  'A Brazilian phone number (optionally +55, with spaces, dots, dashes and parentheses) as +55DDNNNNNNNNN, or BSV01 saying what is wrong (characters, country, length, an area code not in core.pix_phone_area_codes, a mobile without its 9). Python mirror: webapp/pix.py normalize_phone.';

create or replace function core.pix_normalize_key(key_type text, pix_key text) returns text
language plpgsql immutable as $$
declare
  v_type text := upper(btrim(coalesce(key_type, '')));
  -- ASCII white space only, as Python's str.strip(" \t\n\r\f\v") in the mirror.
  v text := regexp_replace(coalesce(pix_key, ''), '^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$', '', 'g');
begin
  if v_type = 'ALEATORIA' then
    v_type := 'EVP';
  end if;
  if v_type not in ('CPF', 'CNPJ', 'EMAIL', 'PHONE', 'EVP') then
    raise exception 'Tipo de chave PIX inválido: use CPF, CNPJ, e-mail, telefone ou chave aleatória.'
      using errcode = 'BSV01', column = 'key_type';
  end if;
  if v = '' then
    raise exception 'Informe a chave PIX.' using errcode = 'BSV01', column = 'pix_key';
  end if;
  if v_type = 'CPF' then
    if not core.is_valid_cpf(v) then
      raise exception 'CPF inválido: confira os 11 dígitos.' using errcode = 'BSV01', column = 'pix_key';
    end if;
    return core.cpf_digits(v);
  elsif v_type = 'CNPJ' then
    if not core.is_valid_cnpj(v) then
      raise exception 'CNPJ inválido: confira os 14 caracteres.' using errcode = 'BSV01', column = 'pix_key';
    end if;
    return core.cnpj_clean(v);
  elsif v_type = 'EMAIL' then
    if length(v) > 77 then
      raise exception 'E-mail inválido: a chave PIX de e-mail tem no máximo 77 caracteres.' using errcode = 'BSV01', column = 'pix_key';
    end if;
    -- lower() only once the key is known to be ASCII (some other letters lower to an ASCII one).
    if v !~ '^[A-Za-z0-9.!#$%&''*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$' then
      raise exception 'E-mail inválido: confira o endereço (ex.: nome@exemplo.com.br).' using errcode = 'BSV01', column = 'pix_key';
    end if;
    return lower(v);
  elsif v_type = 'PHONE' then
    return core.pix_normalize_phone(v);
  end if;
  if v !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$' then
    raise exception 'Chave aleatória inválida: deve ter o formato xxxxxxxx-xxxx-4xxx-xxxx-xxxxxxxxxxxx (36 caracteres).'
      using errcode = 'BSV01', column = 'pix_key';
  end if;
  return lower(v);
end
$$;
comment on function core.pix_normalize_key(text, text) is
  'A PIX key in its canonical form (CPF/CNPJ bare, CNPJ letters upper-case, e-mail lower-case, phone +55DDNNNNNNNNN, random key lower-case UUID v4; key type CPF|CNPJ|EMAIL|PHONE|EVP, ALEATORIA for EVP), or BSV01 naming what is wrong (check digits for CPF and CNPJ). The one rule for every function that stores or compares a key; Python mirror: webapp/pix.py normalize_pix_key.';

create or replace function core.pix_key_is_valid(key_type text, pix_key text) returns boolean
language plpgsql immutable as $$
begin
  perform core.pix_normalize_key(key_type, pix_key);
  return true;
exception when sqlstate 'BSV01' then
  return false;
end
$$;
comment on function core.pix_key_is_valid(text, text) is 'True when a PIX key is valid for its type (see core.pix_normalize_key).';
