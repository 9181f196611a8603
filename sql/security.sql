-- security.sql: two-factor authentication (TOTP), password change and the
-- customer's log of security events.
--
-- Called by the auth blueprint (webapp/auth, webapp/auth/twofactor.py). TOTP
-- codes are computed and compared in Python (pyotp); SQL keeps the secret,
-- refuses a time step that was already used (no replay) and spends recovery
-- codes at most once. Like passwords, recovery codes are hashed in Python
-- (werkzeug); SQL only stores the hashes.

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
-- TOTP
-- ---------------------------------------------------------------------------

create or replace function api.get_twofactor(user_id bigint)
returns table (enabled boolean, pending boolean, secret text, last_used_step bigint, recovery_codes_left int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select t.confirmed_at is not null, t.user_id is not null and t.confirmed_at is null, t.secret, t.last_used_step,
         (select count(*)::int from core.recovery_codes r where r.user_id = get_twofactor.user_id and r.used_at is null)
  from (select get_twofactor.user_id as id) q
  left join core.user_totp t on t.user_id = q.id
$$;
revoke all on function api.get_twofactor(bigint) from public;
grant execute on function api.get_twofactor(bigint) to exchange_app;
comment on function api.get_twofactor(bigint) is
  'Two-factor state of a user: enabled (confirmed), pending (enrolment started), the TOTP secret the app verifies codes with, the last accepted time step and how many recovery codes are left. Always one row.';

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

create or replace function api.confirm_totp_enrolment(user_id bigint, time_step bigint, recovery_code_hashes text[],
                                                      ip text default null)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_totp core.user_totp;
begin
  select * into v_totp from core.user_totp t where t.user_id = confirm_totp_enrolment.user_id for update;
  if v_totp.user_id is null then
    raise exception 'Comece a ativação da verificação em duas etapas de novo.' using errcode = 'BSS01';
  end if;
  if v_totp.confirmed_at is not null then
    raise exception 'A verificação em duas etapas já está ativa.' using errcode = 'BSS01';
  end if;
  if time_step is null or cardinality(recovery_code_hashes) is distinct from 10
     or exists (select from unnest(recovery_code_hashes) h where h is null or length(h) < 20) then
    raise exception 'Dados de ativação inválidos.' using errcode = 'BSV01';
  end if;
  update core.user_totp t set confirmed_at = now(), last_used_step = time_step
   where t.user_id = confirm_totp_enrolment.user_id;
  delete from core.recovery_codes r where r.user_id = confirm_totp_enrolment.user_id;
  insert into core.recovery_codes (user_id, code_hash)
  select confirm_totp_enrolment.user_id, h from unnest(recovery_code_hashes) h;
  perform core.security_event(confirm_totp_enrolment.user_id, 'twofactor_enabled', null, ip);
  perform core.notify(confirm_totp_enrolment.user_id, 'security.twofactor_enabled',
                      'A verificação em duas etapas foi ativada na sua conta.', '/account/security');
end
$$;
revoke all on function api.confirm_totp_enrolment(bigint, bigint, text[], text) from public;
grant execute on function api.confirm_totp_enrolment(bigint, bigint, text[], text) to exchange_app;
comment on function api.confirm_totp_enrolment(bigint, bigint, text[], text) is
  'Enables 2FA once the app has checked a first code against the pending secret: records that code''s time step (it cannot be used again) and the hashes of 10 recovery codes. BSS01 when no enrolment is pending or 2FA is already on.';

create or replace function api.use_totp_step(user_id bigint, time_step bigint)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  -- Atomic: of two requests with the same code, exactly one wins.
  update core.user_totp t set last_used_step = time_step
   where t.user_id = use_totp_step.user_id and t.confirmed_at is not null
     and (t.last_used_step is null or t.last_used_step < time_step);
  return found;
end
$$;
revoke all on function api.use_totp_step(bigint, bigint) from public;
grant execute on function api.use_totp_step(bigint, bigint) to exchange_app;
comment on function api.use_totp_step(bigint, bigint) is
  'Spends a TOTP time step the app has verified: true when it is later than the last one used, false for a replayed (or older) code or when 2FA is off.';

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

create or replace function api.disable_totp(user_id bigint, ip text default null)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  delete from core.user_totp t where t.user_id = disable_totp.user_id and t.confirmed_at is not null;
  if not found then
    raise exception 'A verificação em duas etapas não está ativa.' using errcode = 'BSS01';
  end if;
  delete from core.recovery_codes r where r.user_id = disable_totp.user_id;
  perform core.security_event(disable_totp.user_id, 'twofactor_disabled', null, ip);
  perform core.notify(disable_totp.user_id, 'security.twofactor_disabled',
                      'A verificação em duas etapas foi desativada na sua conta. Se não foi você, fale com o suporte.',
                      '/account/security');
end
$$;
revoke all on function api.disable_totp(bigint, text) from public;
grant execute on function api.disable_totp(bigint, text) to exchange_app;
comment on function api.disable_totp(bigint, text) is
  'Turns 2FA off (the app has checked a current code first) and deletes the recovery codes. BSS01 when it is not on.';

create or replace function api.record_twofactor_failure(user_id bigint, context text, ip text default null)
returns void
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  select from core.security_event(record_twofactor_failure.user_id, 'twofactor_failed', left(context, 60), ip)
$$;
revoke all on function api.record_twofactor_failure(bigint, text, text) from public;
grant execute on function api.record_twofactor_failure(bigint, text, text) to exchange_app;
comment on function api.record_twofactor_failure(bigint, text, text) is
  'Logs a wrong or replayed 2FA code (context: login, withdrawal, password…) in the customer''s security log.';

-- ---------------------------------------------------------------------------
-- Password and the security log
-- ---------------------------------------------------------------------------

create or replace function api.change_password(user_id bigint, password_hash text, ip text default null)
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
  perform core.notify(change_password.user_id, 'security.password_changed',
                      'Sua senha foi alterada. Se não foi você, fale com o suporte.', '/account/security');
end
$$;
revoke all on function api.change_password(bigint, text, text) from public;
grant execute on function api.change_password(bigint, text, text) to exchange_app;
comment on function api.change_password(bigint, text, text) is
  'Stores a new password hash (the app has checked the current password and, when enabled, a 2FA code), logs it and notifies the customer.';

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
