-- security.sql: two-factor authentication (TOTP), step-up for exits,
-- password change and the customer's log of security events.
--
-- Called by the auth blueprint (webapp/auth, webapp/auth/twofactor.py) and by
-- every exit function. TOTP codes (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits)
-- are computed and checked here with pgcrypto; Python only generates the
-- secret and shows its QR code. A time step is spent once (no replay), wrong
-- codes are counted in core.user_totp and lock 2FA for a while. Recovery
-- codes are hashed in Python (werkzeug) and spent here at most once.

create or replace function core.security_event(user_id bigint, kind text, detail text default null, ip text default null)
returns bigint
language sql volatile as $$
  insert into core.security_events (user_id, kind, detail, ip)
  values (security_event.user_id, security_event.kind, security_event.detail, security_event.ip)
  returning id
$$;
comment on function core.security_event(bigint, text, text, text) is
  'Appends a row to a customer''s security log (2FA on/off, password changed, recovery code used, KYC steps).';

-- ---------------------------------------------------------------------------
-- TOTP (security invoker helpers)
-- ---------------------------------------------------------------------------

create or replace function core.base32_decode(encoded text) returns bytea
language plpgsql immutable strict as $$
declare
  v_alphabet constant text := 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  v_bits bigint := 0;
  v_count int := 0;
  v_value int;
  v_out bytea := '';
begin
  for i in 1 .. length(encoded) loop
    v_value := position(substr(encoded, i, 1) in v_alphabet) - 1;
    if v_value < 0 then
      raise exception 'base32_decode: % is not base32', substr(encoded, i, 1) using errcode = 'BSX01';
    end if;
    v_bits := (v_bits << 5) | v_value;
    v_count := v_count + 5;
    if v_count >= 8 then
      v_count := v_count - 8;
      v_out := v_out || decode(lpad(to_hex((v_bits >> v_count) & 255), 2, '0'), 'hex');
      v_bits := v_bits & ((1::bigint << v_count) - 1);
    end if;
  end loop;
  return v_out;
end
$$;
comment on function core.base32_decode(text) is 'RFC 4648 base32 (upper case, no padding) to bytes: how TOTP secrets are written.';

create or replace function core.totp_code(secret text, time_step bigint) returns text
language plpgsql immutable strict as $$
declare
  v_mac bytea := public.hmac(int8send(time_step), core.base32_decode(secret), 'sha1');
  v_at int := get_byte(v_mac, 19) & 15;
begin
  -- RFC 4226 dynamic truncation of the HMAC of the 8-byte big-endian step.
  return lpad(((((get_byte(v_mac, v_at) & 127)::bigint << 24) | (get_byte(v_mac, v_at + 1) << 16)
                | (get_byte(v_mac, v_at + 2) << 8) | get_byte(v_mac, v_at + 3)) % 1000000)::text, 6, '0');
end
$$;
comment on function core.totp_code(text, bigint) is 'The 6-digit TOTP code of a base32 secret for a 30-second time step (RFC 6238, HMAC-SHA1 via pgcrypto).';

create or replace function core.totp_matching_step(secret text, code text) returns bigint
language plpgsql stable as $$
declare
  v_now bigint := floor(extract(epoch from clock_timestamp()) / 30)::bigint;
  v_code text := regexp_replace(coalesce(code, ''), '\s', '', 'g');
begin
  if v_code !~ '^[0-9]{6}$' then
    return null;
  end if;
  -- now, and one step either side for a phone's clock drift
  for v_step in v_now - 1 .. v_now + 1 loop
    if core.totp_code(secret, v_step) = v_code then
      return v_step;
    end if;
  end loop;
  return null;
end
$$;
comment on function core.totp_matching_step(text, text) is 'The time step (now or one either side) a 6-digit code belongs to for a secret, or NULL.';

create or replace function core.check_totp(user_id bigint, code text) returns text
language plpgsql volatile as $$
declare
  v_totp core.user_totp;
  v_step bigint;
begin
  select * into v_totp from core.user_totp t
  where t.user_id = check_totp.user_id and t.confirmed_at is not null for update;
  if not found then
    return 'off';
  elsif v_totp.locked_until > now() then
    return 'locked';
  elsif nullif(btrim(coalesce(code, '')), '') is null then
    return 'missing';
  end if;
  v_step := core.totp_matching_step(v_totp.secret, code);
  if v_step is null then
    return 'wrong';
  elsif v_totp.last_used_step >= v_step then
    return 'replayed';
  end if;
  update core.user_totp t set last_used_step = v_step, failed_attempts = 0, locked_until = null
   where t.user_id = check_totp.user_id;
  return 'ok';
end
$$;
comment on function core.check_totp(bigint, text) is
  'Checks a TOTP code of a user with 2FA on and spends its time step: ok, wrong, replayed (that step or a later one was used), missing, locked (too many wrong codes) or off (2FA not enabled). Counts nothing: see core.note_totp_failure.';

create or replace function core.note_totp_failure(user_id bigint, context text, ip text default null) returns text
language plpgsql volatile as $$
declare
  v_totp core.user_totp;
begin
  update core.user_totp t set failed_attempts = t.failed_attempts + 1
   where t.user_id = note_totp_failure.user_id and t.confirmed_at is not null
  returning * into v_totp;
  perform core.security_event(note_totp_failure.user_id, 'twofactor_failed', left(context, 60), ip);
  if v_totp.failed_attempts >= core.setting('totp_max_failures')::int then
    update core.user_totp t
       set failed_attempts = 0, locked_until = now() + make_interval(mins => core.setting('totp_lock_minutes')::int)
     where t.user_id = note_totp_failure.user_id;
    perform core.notify(note_totp_failure.user_id, 'security.twofactor_locked',
      'Muitos códigos de verificação errados: a verificação em duas etapas ficou bloqueada por ' ||
      core.setting('totp_lock_minutes') || ' minutos. Se não foi você, troque sua senha.', '/account/security');
    return 'locked';
  end if;
  return 'counted';
end
$$;
comment on function core.note_totp_failure(bigint, text, text) is
  'Counts a wrong 2FA code (logged as a security event); after totp_max_failures in a row 2FA is locked for totp_lock_minutes (returns locked) and the customer notified.';

create or replace function core.assert_step_up(user_id bigint, totp_code text, context text) returns void
language plpgsql volatile as $$
declare
  v_outcome text := core.check_totp(assert_step_up.user_id, assert_step_up.totp_code);
begin
  -- A customer with 2FA on confirms every exit with a fresh code. A refusal
  -- rolls back, so the app records the failure afterwards (DETAIL names it).
  if v_outcome in ('ok', 'off') then
    return;
  end if;
  raise exception '%', case v_outcome
      when 'missing' then 'Informe o código de 6 dígitos do seu aplicativo autenticador.'
      when 'replayed' then 'Este código já foi usado. Aguarde o próximo código do aplicativo.'
      when 'locked' then 'Muitos códigos errados: a verificação em duas etapas está bloqueada por alguns minutos.'
      else 'Código incorreto ou expirado. Confira o horário do celular e tente de novo.' end
    using errcode = 'BSV01', column = 'totp_code',
          detail = case when v_outcome in ('wrong', 'replayed') then 'totp_failed:' || assert_step_up.user_id || ':' || left(context, 40)
                        else '' end;
end
$$;
comment on function core.assert_step_up(bigint, text, text) is
  'Step-up for an exit: nothing when 2FA is off or the code is good (its step is spent); otherwise BSV01 on totp_code. A wrong or replayed code carries DETAIL totp_failed:<user>:<context>, which the app reports to api.record_twofactor_failure after the rollback.';

create or replace function core.tg_user_totp__flag() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user bigint := case when tg_op = 'DELETE' then old.user_id else new.user_id end;
begin
  update core.users u
     set twofactor_on = exists (select from core.user_totp t where t.user_id = v_user and t.confirmed_at is not null)
   where u.id = v_user;
  return null;
end
$$;
comment on function core.tg_user_totp__flag() is
  'Keeps users.twofactor_on (read by every exit with the customer''s row) equal to whether a confirmed TOTP exists.';
create or replace trigger user_totp_flag
  after insert or delete or update of confirmed_at on core.user_totp
  for each row execute function core.tg_user_totp__flag();

-- ---------------------------------------------------------------------------
-- TOTP: the customer's operations
-- ---------------------------------------------------------------------------

drop function if exists api.use_totp_step(bigint, bigint);

create or replace function api.get_twofactor(user_id bigint)
returns table (enabled boolean, pending boolean, secret text, recovery_codes_left int, locked_until timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  -- The secret leaves the database only while enrolment is pending (to show its QR code).
  select t.confirmed_at is not null, t.user_id is not null and t.confirmed_at is null,
         case when t.confirmed_at is null then t.secret end,
         (select count(*)::int from core.recovery_codes r where r.user_id = get_twofactor.user_id and r.used_at is null),
         case when t.locked_until > now() then t.locked_until end
  from (select get_twofactor.user_id as id) q
  left join core.user_totp t on t.user_id = q.id
$$;
revoke all on function api.get_twofactor(bigint) from public;
grant execute on function api.get_twofactor(bigint) to exchange_app;
comment on function api.get_twofactor(bigint) is
  'Two-factor state of a user: enabled (confirmed), pending (enrolment started; only then the secret, for its QR code), how many recovery codes are left, and until when 2FA is locked after wrong codes. Always one row.';

create or replace function api.begin_totp_enrolment(user_id bigint, secret text)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_totp core.user_totp;
begin
  if not exists (select from core.users u where u.id = begin_totp_enrolment.user_id) then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  select * into v_totp from core.user_totp t where t.user_id = begin_totp_enrolment.user_id for update;
  if v_totp.confirmed_at is not null then
    raise exception 'A verificação em duas etapas já está ativa.' using errcode = 'BSS01';
  end if;
  if v_totp.user_id is not null then
    return v_totp.secret;  -- reloading the page keeps the QR code already scanned
  end if;
  if secret is null or secret !~ '^[A-Z2-7]{16,64}$' then
    raise exception 'Segredo TOTP inválido.' using errcode = 'BSV01', column = 'secret';
  end if;
  insert into core.user_totp (user_id, secret) values (begin_totp_enrolment.user_id, secret);
  return secret;
end
$$;
revoke all on function api.begin_totp_enrolment(bigint, text) from public;
grant execute on function api.begin_totp_enrolment(bigint, text) to exchange_app;
comment on function api.begin_totp_enrolment(bigint, text) is
  'Starts 2FA enrolment with a new base32 secret, or returns the pending secret when enrolment had already started. BSS01 when 2FA is already enabled.';

drop function if exists api.confirm_totp_enrolment(bigint, bigint, text[], text);
create or replace function api.confirm_totp_enrolment(user_id bigint, code text, recovery_code_hashes text[],
                                                      ip text default null, session_id bigint default null)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_totp core.user_totp;
  v_step bigint;
begin
  select * into v_totp from core.user_totp t where t.user_id = confirm_totp_enrolment.user_id for update;
  if v_totp.user_id is null then
    raise exception 'Comece a ativação da verificação em duas etapas de novo.' using errcode = 'BSS01';
  end if;
  if v_totp.confirmed_at is not null then
    raise exception 'A verificação em duas etapas já está ativa.' using errcode = 'BSS01';
  end if;
  if cardinality(recovery_code_hashes) is distinct from 10
     or exists (select from unnest(recovery_code_hashes) h where h is null or length(h) < 20) then
    raise exception 'Dados de ativação inválidos.' using errcode = 'BSV01';
  end if;
  v_step := core.totp_matching_step(v_totp.secret, code);
  if v_step is null then
    raise exception 'Código incorreto. Confira se o aplicativo mostra bs-market e tente o código atual.'
      using errcode = 'BSV01', column = 'totp_code';
  end if;
  update core.user_totp t set confirmed_at = now(), last_used_step = v_step, failed_attempts = 0, locked_until = null
   where t.user_id = confirm_totp_enrolment.user_id;
  delete from core.recovery_codes r where r.user_id = confirm_totp_enrolment.user_id;
  insert into core.recovery_codes (user_id, code_hash)
  select confirm_totp_enrolment.user_id, h from unnest(recovery_code_hashes) h;
  perform core.security_event(confirm_totp_enrolment.user_id, 'twofactor_enabled', null, ip);
  -- a 2FA change ends the other sessions (sql/accounts.sql)
  perform core.end_sessions(confirm_totp_enrolment.user_id, 'twofactor_changed', confirm_totp_enrolment.session_id);
  perform core.notify(confirm_totp_enrolment.user_id, 'security.twofactor_enabled',
                      'A verificação em duas etapas foi ativada na sua conta.', '/account/security');
end
$$;
revoke all on function api.confirm_totp_enrolment(bigint, text, text[], text, bigint) from public;
grant execute on function api.confirm_totp_enrolment(bigint, text, text[], text, bigint) to exchange_app;
comment on function api.confirm_totp_enrolment(bigint, text, text[], text, bigint) is
  'Enables 2FA when the first code typed matches the pending secret (checked here; its step cannot be used again) and stores the hashes of 10 recovery codes; every other session of the customer (all but session_id) ends. BSV01 wrong code, BSS01 no enrolment pending or 2FA already on.';

create or replace function api.verify_totp(user_id bigint, code text, context text, ip text default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_outcome text := core.check_totp(verify_totp.user_id, verify_totp.code);
begin
  -- Returns instead of raising, so that a wrong code is counted.
  if v_outcome in ('wrong', 'replayed') then
    if core.note_totp_failure(verify_totp.user_id, verify_totp.context, verify_totp.ip) = 'locked' then
      return 'locked';
    end if;
  end if;
  return v_outcome;
end
$$;
revoke all on function api.verify_totp(bigint, text, text, text) from public;
grant execute on function api.verify_totp(bigint, text, text, text) to exchange_app;
comment on function api.verify_totp(bigint, text, text, text) is
  'Checks a 2FA code typed at login or before a sensitive change (context: login, disable_2fa, password…): ok (its step spent), wrong, replayed, missing, locked or off. Wrong and replayed codes are counted (core.note_totp_failure): after totp_max_failures 2FA locks for totp_lock_minutes, even at login.';

create or replace function api.list_recovery_codes(user_id bigint)
returns table (code_id bigint, code_hash text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select r.id, r.code_hash from core.recovery_codes r
  where r.user_id = list_recovery_codes.user_id and r.used_at is null
  order by r.id
$$;
revoke all on function api.list_recovery_codes(bigint) from public;
grant execute on function api.list_recovery_codes(bigint) to exchange_app;
comment on function api.list_recovery_codes(bigint) is 'Hashes of a user''s unused recovery codes, for the app to check a typed code against.';

create or replace function api.use_recovery_code(user_id bigint, code_id bigint, ip text default null)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_left int;
begin
  update core.recovery_codes r set used_at = now()
   where r.id = code_id and r.user_id = use_recovery_code.user_id and r.used_at is null;
  if not found then
    return false;
  end if;
  select count(*) into v_left from core.recovery_codes r where r.user_id = use_recovery_code.user_id and r.used_at is null;
  perform core.security_event(use_recovery_code.user_id, 'recovery_code_used',
                              format('restam %s códigos', v_left), ip);
  perform core.notify(use_recovery_code.user_id, 'security.recovery_code_used',
                      format('Um código de recuperação foi usado na sua conta. Restam %s.', v_left), '/account/security');
  return true;
end
$$;
revoke all on function api.use_recovery_code(bigint, bigint, text) from public;
grant execute on function api.use_recovery_code(bigint, bigint, text) to exchange_app;
comment on function api.use_recovery_code(bigint, bigint, text) is
  'Spends a recovery code the app has matched: true the first time, false when it was already used (or is not the user''s). Logged as a security event.';

drop function if exists api.disable_totp(bigint, text);
create or replace function api.disable_totp(user_id bigint, code text default null, ip text default null,
                                            session_id bigint default null)
returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_outcome text := core.check_totp(disable_totp.user_id, disable_totp.code);
  v_pause timestamptz := now() + make_interval(hours => core.setting('twofactor_off_exit_pause_hours')::int);
begin
  -- The code from the phone, checked here: a session without it cannot turn
  -- 2FA off. Returns instead of raising, so that a wrong code is counted.
  if v_outcome <> 'ok' then
    if v_outcome in ('wrong', 'replayed')
       and core.note_totp_failure(disable_totp.user_id, 'disable_2fa', disable_totp.ip) = 'locked' then
      return 'locked';
    end if;
    return v_outcome;
  end if;
  delete from core.user_totp t where t.user_id = disable_totp.user_id;
  delete from core.recovery_codes r where r.user_id = disable_totp.user_id;
  -- and no exit for a while: a stolen phone and password gain nothing at once
  v_pause := core.pause_exits(disable_totp.user_id, core.setting('twofactor_off_exit_pause_hours')::int, 'twofactor_disabled');
  perform core.end_sessions(disable_totp.user_id, 'twofactor_changed', disable_totp.session_id);
  perform core.security_event(disable_totp.user_id, 'twofactor_disabled', null, ip);
  perform core.notify(disable_totp.user_id, 'security.twofactor_disabled',
                      'A verificação em duas etapas foi desativada na sua conta. Por segurança, saques e envios ficam pausados até ' ||
                      core.rails_when(v_pause) || '. Se não foi você, fale com o suporte.', '/account/security');
  return 'ok';
end
$$;
revoke all on function api.disable_totp(bigint, text, text, bigint) from public;
grant execute on function api.disable_totp(bigint, text, text, bigint) to exchange_app;
comment on function api.disable_totp(bigint, text, text, bigint) is
  'Turns 2FA off when the code typed is a current TOTP code (checked here; wrong codes counted), deletes the recovery codes, pauses exits for twofactor_off_exit_pause_hours and ends every other session (all but session_id). Returns ok, or why not: wrong, replayed, missing, locked, off.';

create or replace function api.record_twofactor_failure(user_id bigint, context text, ip text default null)
returns text
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  select core.note_totp_failure(record_twofactor_failure.user_id, record_twofactor_failure.context, record_twofactor_failure.ip)
$$;
revoke all on function api.record_twofactor_failure(bigint, text, text) from public;
grant execute on function api.record_twofactor_failure(bigint, text, text) to exchange_app;
comment on function api.record_twofactor_failure(bigint, text, text) is
  'Counts a wrong 2FA code that was refused inside a rolled-back operation (an exit''s step-up, a recovery code at login) and logs it: returns locked when it locked 2FA, else counted.';

-- ---------------------------------------------------------------------------
-- Password and the security log
-- ---------------------------------------------------------------------------

create or replace function api.change_password(user_id bigint, password_hash text, ip text default null,
                                               session_id bigint default null)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  if password_hash is null or length(password_hash) < 20 then
    raise exception 'Senha inválida.' using errcode = 'BSV01', column = 'new_password';
  end if;
  update core.users u set password_hash = change_password.password_hash, failed_logins = 0
   where u.id = change_password.user_id;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  perform core.security_event(change_password.user_id, 'password_changed', null, ip);
  perform core.end_sessions(change_password.user_id, 'password_changed', change_password.session_id);
  perform core.notify(change_password.user_id, 'security.password_changed',
                      'Sua senha foi alterada. Se não foi você, fale com o suporte.', '/account/security');
end
$$;
revoke all on function api.change_password(bigint, text, text, bigint) from public;
grant execute on function api.change_password(bigint, text, text, bigint) to exchange_app;
comment on function api.change_password(bigint, text, text, bigint) is
  'Stores a new password hash (the app has checked the current password and, when enabled, a 2FA code), ends every other session (all but session_id), logs it and notifies the customer.';

create or replace function api.get_password_hash(user_id bigint)
returns text
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select u.password_hash from core.users u where u.id = get_password_hash.user_id
$$;
revoke all on function api.get_password_hash(bigint) from public;
grant execute on function api.get_password_hash(bigint) to exchange_app;
comment on function api.get_password_hash(bigint) is 'The password hash of a logged-in user, for the app to check the current password before a change.';

create or replace function api.list_login_events(user_id bigint, max_rows int default 20)
returns table (created_at timestamptz, succeeded boolean, ip text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select e.created_at, e.succeeded, e.ip from core.login_events e
  where e.user_id = list_login_events.user_id
  order by e.created_at desc, e.id desc limit least(greatest(max_rows, 1), 100)
$$;
revoke all on function api.list_login_events(bigint, int) from public;
grant execute on function api.list_login_events(bigint, int) to exchange_app;
comment on function api.list_login_events(bigint, int) is 'A user''s latest login attempts (successful or not), newest first.';

create or replace function api.list_security_events(user_id bigint, max_rows int default 20)
returns table (created_at timestamptz, kind text, detail text, ip text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select e.created_at, e.kind, e.detail, e.ip from core.security_events e
  where e.user_id = list_security_events.user_id
  order by e.id desc limit least(greatest(max_rows, 1), 100)
$$;
revoke all on function api.list_security_events(bigint, int) from public;
grant execute on function api.list_security_events(bigint, int) to exchange_app;
comment on function api.list_security_events(bigint, int) is 'A user''s latest security events (2FA, password, recovery codes, KYC), newest first.';
