-- auth.sql: customers and their logins.
--
-- Called by the auth blueprint (webapp/auth): register, the two halves of a
-- login (fetch the password hash, then record the outcome, which also locks
-- the account after too many failures), and the current-user lookup that
-- Flask-Login does on every request. Passwords are hashed in Python with a
-- kept library (werkzeug's scrypt); SQL only stores the hash.

create or replace function api.register_user(email text, password_hash text, display_name text)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_email text := lower(btrim(email));
  v_user bigint;
begin
  if v_email is null or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or length(v_email) > 254 then
    raise exception 'Informe um e-mail válido.' using errcode = 'BSV01', column = 'email';
  end if;
  if display_name is null or length(btrim(display_name)) not between 1 and 80 then
    raise exception 'Informe seu nome (até 80 caracteres).' using errcode = 'BSV01', column = 'display_name';
  end if;
  if password_hash is null or length(password_hash) < 20 then
    raise exception 'Senha inválida.' using errcode = 'BSV01', column = 'password';
  end if;
  insert into core.users (email, password_hash, display_name)
  values (v_email, register_user.password_hash, btrim(display_name))
  on conflict on constraint users_email_key do nothing
  returning id into v_user;
  if v_user is null then
    raise exception 'Este e-mail já está cadastrado. Entre com sua senha ou use outro e-mail.'
      using errcode = 'BSU01', column = 'email';
  end if;
  insert into core.accounts (user_id, currency, purpose, must_not_go_negative)
  select v_user, c.code, p.purpose, true
  from core.currencies c cross join (values ('available'), ('locked')) p (purpose);
  -- the address is proved by following the link of this mail (sql/accounts.sql)
  perform core.issue_account_token(v_user, 'verify_email', v_email);
  return v_user;
end
$$;
revoke all on function api.register_user(text, text, text) from public;
grant execute on function api.register_user(text, text, text) to exchange_app;
comment on function api.register_user(text, text, text) is
  'Creates a customer with an available and a locked account in every currency, and queues the e-mail verification link (until it is followed the customer cannot deposit, trade or withdraw: core.assert_email_verified). BSV01 invalid e-mail or name, BSU01 e-mail already registered.';

create or replace function api.get_login(email text)
returns table (user_id bigint, password_hash text, locked_until timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select u.id, u.password_hash, case when u.locked_until > now() then u.locked_until end
  from core.users u where u.email = lower(btrim(get_login.email))
$$;
revoke all on function api.get_login(text) from public;
grant execute on function api.get_login(text) to exchange_app;
comment on function api.get_login(text) is
  'The password hash of an e-mail, for the app to verify, and until when the account is locked after failed logins (NULL when not locked). No row for an unknown e-mail.';

create or replace function api.record_login(email text, password_ok boolean, ip text)
returns table (outcome text, user_id bigint, locked_until timestamptz)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_max int := core.setting('login_max_failures')::int;
  v_minutes int := core.setting('login_lock_minutes')::int;
begin
  -- Returns instead of raising: a raise would roll back the failure count.
  select * into v_user from core.users u where u.email = lower(btrim(record_login.email)) for update;
  insert into core.login_events (user_id, email, succeeded, ip)
  values (v_user.id, lower(btrim(record_login.email)), coalesce(password_ok, false) and v_user.id is not null
          and not coalesce(v_user.locked_until > now(), false), ip);
  if v_user.id is null then
    return query select 'bad_credentials', null::bigint, null::timestamptz;
    return;
  end if;
  if v_user.locked_until > now() then
    return query select 'locked', v_user.id, v_user.locked_until;
    return;
  end if;
  if password_ok and v_user.status = 'closed' then
    -- closed by the customer (sql/privacy.sql): said only to whoever knows the password
    return query select 'closed', v_user.id, null::timestamptz;
    return;
  end if;
  if password_ok then
    update core.users u set failed_logins = 0, locked_until = null, last_login_at = now() where u.id = v_user.id;
    return query select 'ok', v_user.id, null::timestamptz;
    return;
  end if;
  if v_user.failed_logins + 1 >= v_max then
    update core.users u set failed_logins = 0, locked_until = now() + make_interval(mins => v_minutes)
     where u.id = v_user.id returning u.locked_until into v_user.locked_until;
    return query select 'locked', v_user.id, v_user.locked_until;
    return;
  end if;
  update core.users u set failed_logins = u.failed_logins + 1 where u.id = v_user.id;
  return query select 'bad_credentials', v_user.id, null::timestamptz;
end
$$;
revoke all on function api.record_login(text, boolean, text) from public;
grant execute on function api.record_login(text, boolean, text) to exchange_app;
comment on function api.record_login(text, boolean, text) is
  'Records a login attempt and decides it: outcome ok, bad_credentials, closed (the right password of an account its customer closed), or locked (after login_max_failures failures in a row the account is locked for login_lock_minutes). Every attempt is logged in core.login_events.';

-- The web's user loader: the one database call every logged-in page makes
-- (the navigation's badge and the 2FA field read its last two columns).
drop function if exists api.get_user(bigint);
create function api.get_user(user_id bigint)
returns table (user_id bigint, email text, display_name text, role text, status text, kyc_level int,
               twofactor_on boolean, unread_notifications int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select u.id, u.email, u.display_name, u.role, u.status, u.kyc_level, u.twofactor_on,
         (select count(*)::int from core.notifications n where n.user_id = u.id and n.read_at is null)
  from core.users u where u.id = get_user.user_id and u.status <> 'closed'  -- a closed account's sessions end
$$;
revoke all on function api.get_user(bigint) from public;
grant execute on function api.get_user(bigint) to exchange_app;
comment on function api.get_user(bigint) is
  'The profile of a user (the session''s current user), with whether 2FA is on and how many notifications are unread: everything a page needs about its user, in one call. No row for a closed account, so its sessions end.';
