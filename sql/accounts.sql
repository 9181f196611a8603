-- accounts.sql: e-mail (the outbox), e-mail verification and password reset
-- links, server-side sessions, lost-2FA recovery and the anti-phishing code.
--
-- Called by the auth blueprint (webapp/auth: register, login, /account/*,
-- /password/*), the back office (/admin/twofactor-recoveries) and the worker
-- (webapp/auth/tasks.py sends the outbox through SMTP_URL).
--
-- Mail: the function of an event queues its e-mail (core.enqueue_mail) in
-- the same transaction. The worker claims due rows (admin.claim_mail), sends
-- each outside any transaction with Message-ID <mail-ID@…>, then records the
-- outcome (admin.record_mail_outcome). A link with a token is made by the
-- worker at send time: it draws the raw token (secrets.token_urlsafe), stores
-- only its sha256 (admin.issue_mail_token) and puts the raw token in the
-- mail; the raw token is never in the database. A resend after a crash draws
-- a new token (the same Message-ID), so at most the latest link works.
--
-- Sessions: the cookie holds a random token; core.user_sessions its sha256.
-- The web's user loader makes one call per request, api.session_user, which
-- returns nothing for an ended or idle session.

-- ---------------------------------------------------------------------------
-- Helpers (security invoker)
-- ---------------------------------------------------------------------------

create or replace function core.assert_email_verified(user_id bigint) returns void
language plpgsql stable as $$
begin
  if exists (select from core.users u where u.id = assert_email_verified.user_id and u.email_verified_at is null) then
    raise exception 'Confirme seu e-mail antes de depositar, negociar, enviar ou sacar: abra o link que enviamos para o seu endereço.'
      using errcode = 'BSE01',
            hint = 'Não recebeu? Peça outro e-mail em Minha conta › Segurança.';
  end if;
end
$$;
comment on function core.assert_email_verified(bigint) is
  'First check of every deposit, trade (market, P2P), transfer and withdrawal: BSE01 while the customer has not confirmed their e-mail address.';

create or replace function core.enqueue_mail(user_id bigint, recipient text, kind text, params jsonb default '{}')
returns bigint
language sql volatile as $$
  insert into core.mail_outbox (user_id, recipient, kind, params)
  values (enqueue_mail.user_id, enqueue_mail.recipient, enqueue_mail.kind, coalesce(enqueue_mail.params, '{}'))
  returning id
$$;
comment on function core.enqueue_mail(bigint, text, text, jsonb) is
  'Queues an e-mail in the outbox (sent by the worker after this transaction commits).';

create or replace function core.notify_in_app(user_id bigint, kind text, message text, link text default null)
returns bigint
language sql volatile as $$
  -- marked as e-mailed: the outbox mail of the same event says it already
  update core.notifications n set emailed_at = now()
   where n.id = core.notify(notify_in_app.user_id, notify_in_app.kind, notify_in_app.message, notify_in_app.link)
  returning n.id
$$;
comment on function core.notify_in_app(bigint, text, text, text) is
  'An in-app notification without its e-mail copy (for events that queue their own e-mail in the outbox).';

create or replace function core.account_mails_last_hour(user_id bigint, kind text) returns int
language sql stable as $$
  select count(*)::int from core.mail_outbox m
  where m.user_id = account_mails_last_hour.user_id and m.kind = account_mails_last_hour.kind
    and m.created_at > now() - interval '1 hour'
$$;
comment on function core.account_mails_last_hour(bigint, text) is 'How many e-mails of a kind were queued for a customer in the last hour (the cap account_mails_per_hour).';

create or replace function core.issue_account_token(user_id bigint, purpose text, email text) returns bigint
language plpgsql volatile as $$
declare
  v_mail bigint;
begin
  -- A newer link replaces the older ones: their mails, if not sent yet, are not sent.
  update core.mail_outbox m set status = 'cancelled'
   where m.status = 'pending'
     and m.id in (select t.mail_id from core.account_tokens t
                  where t.user_id = issue_account_token.user_id and t.purpose = issue_account_token.purpose
                    and t.used_at is null and t.revoked_at is null);
  update core.account_tokens t set revoked_at = now()
   where t.user_id = issue_account_token.user_id and t.purpose = issue_account_token.purpose
     and t.used_at is null and t.revoked_at is null;
  v_mail := core.enqueue_mail(issue_account_token.user_id, issue_account_token.email, issue_account_token.purpose,
                              jsonb_build_object('email', issue_account_token.email));
  insert into core.account_tokens (user_id, purpose, email, mail_id)
  values (issue_account_token.user_id, issue_account_token.purpose, issue_account_token.email, v_mail);
  return v_mail;
end
$$;
comment on function core.issue_account_token(bigint, text, text) is
  'Queues the mail of a verify_email or password_reset link for an address and its token row (hash filled in by the worker when it sends); revokes the customer''s older open links of that purpose. Returns the mail id.';

create or replace function core.take_account_token(token_hash text, purpose text) returns core.account_tokens
language plpgsql volatile as $$
declare
  v_token core.account_tokens;
begin
  select * into v_token from core.account_tokens t
  where t.token_hash = take_account_token.token_hash and t.purpose = take_account_token.purpose for update;
  if not found then
    raise exception 'Link inválido. Confira se copiou o endereço inteiro do e-mail, ou peça um novo.' using errcode = 'BST01';
  elsif v_token.used_at is not null then
    raise exception 'Este link já foi usado. Se precisar, peça um novo.' using errcode = 'BST03';
  elsif v_token.revoked_at is not null then
    raise exception 'Este link foi substituído por um mais recente: use o último e-mail que enviamos.' using errcode = 'BST03';
  elsif v_token.expires_at <= now() then
    raise exception 'Este link expirou. Peça um novo.' using errcode = 'BST02';
  end if;
  return v_token;
end
$$;
comment on function core.take_account_token(text, text) is
  'The open token of a link (locked), by the sha256 of the raw token: BST01 unknown (forged, mistyped), BST03 already used or replaced by a newer link, BST02 expired.';

create or replace function core.mark_email_verified(user_id bigint) returns void
language plpgsql volatile as $$
begin
  update core.users u set email_verified_at = coalesce(u.email_verified_at, now()) where u.id = mark_email_verified.user_id;
  update core.mail_outbox m set status = 'cancelled'
   where m.status = 'pending'
     and m.id in (select t.mail_id from core.account_tokens t
                  where t.user_id = mark_email_verified.user_id and t.purpose = 'verify_email'
                    and t.used_at is null and t.revoked_at is null);
  update core.account_tokens t set revoked_at = now()
   where t.user_id = mark_email_verified.user_id and t.purpose = 'verify_email' and t.used_at is null and t.revoked_at is null;
end
$$;
comment on function core.mark_email_verified(bigint) is
  'Owner only (the demo seed, test fixtures, a DBA after a support case): marks the current address verified and drops the open verification links.';

create or replace function core.end_sessions(user_id bigint, reason text, keep_session_id bigint default null) returns int
language sql volatile as $$
  with ended as (
    update core.user_sessions s set ended_at = now(), end_reason = end_sessions.reason
     where s.user_id = end_sessions.user_id and s.ended_at is null
       and s.id is distinct from end_sessions.keep_session_id
    returning 1)
  select count(*)::int from ended
$$;
comment on function core.end_sessions(bigint, text, bigint) is
  'Ends every open session of a customer (but keep_session_id, the one making the change), with a reason; returns how many.';

create or replace function core.pause_exits(user_id bigint, hours int, reason text) returns timestamptz
language plpgsql volatile as $$
declare
  v_until timestamptz := now() + make_interval(hours => hours);
begin
  -- The mechanism of api.disable_totp (sql/exits.sql: core.lock_for_exit
  -- refuses before exits_paused_until, exposure_until makes exits look).
  update core.users u
     set exits_paused_until = greatest(coalesce(u.exits_paused_until, '-infinity'), v_until),
         exits_paused_reason = pause_exits.reason,
         exposure_until = greatest(u.exposure_until, v_until)
   where u.id = pause_exits.user_id
  returning u.exits_paused_until into v_until;
  return v_until;
end
$$;
comment on function core.pause_exits(bigint, int, text) is
  'No exit for the customer for `hours` (never shortening a longer pause); reason: password_reset, twofactor_recovered… Returns until when.';

-- ---------------------------------------------------------------------------
-- E-mail verification and e-mail change
-- ---------------------------------------------------------------------------

create or replace function api.get_account(user_id bigint)
returns table (email text, email_verified boolean, pending_email text, anti_phishing_code text,
               exits_paused_until timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select u.email, u.email_verified_at is not null,
         (select t.email from core.account_tokens t
          where t.user_id = u.id and t.purpose = 'verify_email' and t.used_at is null and t.revoked_at is null
            and t.email <> u.email and coalesce(t.expires_at > now(), true)
          order by t.id desc limit 1),
         u.anti_phishing_code,
         case when u.exits_paused_until > now() then u.exits_paused_until end
  from core.users u where u.id = get_account.user_id
$$;
revoke all on function api.get_account(bigint) from public;
grant execute on function api.get_account(bigint) to exchange_app;
comment on function api.get_account(bigint) is
  'The account page''s facts: the address and whether it is verified, a new address waiting for its link, the anti-phishing code, and until when exits are paused.';

create or replace function api.resend_verification(user_id bigint) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_email text;
  v_last timestamptz;
begin
  select * into v_user from core.users u where u.id = resend_verification.user_id for update;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  -- a pending change of address is what needs the link, else the address itself
  select t.email into v_email from core.account_tokens t
  where t.user_id = v_user.id and t.purpose = 'verify_email' and t.used_at is null and t.revoked_at is null
    and t.email <> v_user.email
  order by t.id desc limit 1;
  if v_email is null and v_user.email_verified_at is not null then
    raise exception 'Seu e-mail já está confirmado.' using errcode = 'BSS01';
  end if;
  select max(m.created_at) into v_last from core.mail_outbox m where m.user_id = v_user.id and m.kind = 'verify_email';
  if v_last > now() - make_interval(secs => core.setting('verification_resend_seconds')::int)
     or core.account_mails_last_hour(v_user.id, 'verify_email') >= core.setting('account_mails_per_hour')::int then
    raise exception 'Enviamos um e-mail há pouco. Aguarde alguns minutos antes de pedir outro.' using errcode = 'BSR01';
  end if;
  v_email := coalesce(v_email, v_user.email);
  perform core.issue_account_token(v_user.id, 'verify_email', v_email);
  return v_email;
end
$$;
revoke all on function api.resend_verification(bigint) from public;
grant execute on function api.resend_verification(bigint) to exchange_app;
comment on function api.resend_verification(bigint) is
  'Sends a new verification link (to the pending new address if a change is waiting, else to the account''s); older links stop working. Returns the address. BSS01 already verified, BSR01 asked too recently (verification_resend_seconds, account_mails_per_hour).';

create or replace function api.request_email_change(user_id bigint, new_email text, ip text default null) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_email text := lower(btrim(new_email));
begin
  select * into v_user from core.users u where u.id = request_email_change.user_id for update;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if v_email is null or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or length(v_email) > 254 then
    raise exception 'Informe um e-mail válido.' using errcode = 'BSV01', column = 'new_email';
  end if;
  if v_email = v_user.email then
    raise exception 'Este já é o seu e-mail.' using errcode = 'BSV01', column = 'new_email';
  end if;
  if exists (select from core.users u where u.email = v_email) then
    raise exception 'Este e-mail já está cadastrado em outra conta.' using errcode = 'BSU01', column = 'new_email';
  end if;
  if core.account_mails_last_hour(v_user.id, 'verify_email') >= core.setting('account_mails_per_hour')::int then
    raise exception 'Muitos pedidos em pouco tempo. Tente de novo mais tarde.' using errcode = 'BSR01';
  end if;
  perform core.issue_account_token(v_user.id, 'verify_email', v_email);
  -- the old address hears of it: a stolen session cannot move the account silently
  perform core.enqueue_mail(v_user.id, v_user.email, 'email_change_notice', jsonb_build_object('new_email', v_email));
  perform core.security_event(v_user.id, 'email_change_requested', v_email, ip);
  return v_email;
end
$$;
revoke all on function api.request_email_change(bigint, text, text) from public;
grant execute on function api.request_email_change(bigint, text, text) to exchange_app;
comment on function api.request_email_change(bigint, text, text) is
  'Starts a change of address (the app has checked the current password): a link goes to the new address, a notice to the old one; the address changes only when the link is followed (api.verify_email). BSV01 invalid or same address, BSU01 taken, BSR01 too many requests.';

create or replace function api.verify_email(token_hash text, ip text default null)
returns table (user_id bigint, email text, changed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_token core.account_tokens := core.take_account_token(verify_email.token_hash, 'verify_email');
  v_user core.users;
begin
  select * into v_user from core.users u where u.id = v_token.user_id for update;
  update core.account_tokens t set used_at = now() where t.id = v_token.id;
  if v_token.email <> v_user.email then
    if exists (select from core.users u where u.email = v_token.email) then
      raise exception 'Este e-mail já está cadastrado em outra conta.' using errcode = 'BSU01';
    end if;
    update core.users u set email = v_token.email, email_verified_at = now() where u.id = v_user.id;
    perform core.security_event(v_user.id, 'email_changed', v_user.email || ' → ' || v_token.email, ip);
    perform core.notify_in_app(v_user.id, 'security.email_changed',
                               'Seu e-mail de acesso agora é ' || v_token.email || '.', '/account/security');
  else
    update core.users u set email_verified_at = coalesce(u.email_verified_at, now()) where u.id = v_user.id;
    perform core.security_event(v_user.id, 'email_verified', v_token.email, ip);
  end if;
  -- one open verification link at most: every other one stops working
  update core.account_tokens t set revoked_at = now()
   where t.user_id = v_user.id and t.purpose = 'verify_email' and t.used_at is null and t.revoked_at is null;
  return query select v_user.id, v_token.email, v_token.email <> v_user.email;
end
$$;
revoke all on function api.verify_email(text, text) from public;
grant execute on function api.verify_email(text, text) to exchange_app;
comment on function api.verify_email(text, text) is
  'Follows a verification link (token_hash: sha256 hex of the raw token): marks the address verified, or, for a change of address, makes the new address the login. Single use. BST01 unknown, BST02 expired, BST03 used or replaced, BSU01 the new address was taken meanwhile.';

-- ---------------------------------------------------------------------------
-- Password reset
-- ---------------------------------------------------------------------------

create or replace function api.request_password_reset(email text, ip text default null) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
begin
  -- The same (empty) answer whether the address is ours or not: the page
  -- says "if it is registered, a link is on its way".
  select * into v_user from core.users u where u.email = lower(btrim(request_password_reset.email)) for update;
  if v_user.id is null
     or core.account_mails_last_hour(v_user.id, 'password_reset') >= core.setting('account_mails_per_hour')::int then
    return;
  end if;
  perform core.issue_account_token(v_user.id, 'password_reset', v_user.email);
  perform core.security_event(v_user.id, 'password_reset_requested', null, ip);
end
$$;
revoke all on function api.request_password_reset(text, text) from public;
grant execute on function api.request_password_reset(text, text) to exchange_app;
comment on function api.request_password_reset(text, text) is
  'Mails a password reset link when the address belongs to an account (at most account_mails_per_hour an hour); answers nothing either way, so the page cannot tell whether an address is registered.';

create or replace function api.get_password_reset(token_hash text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  return (core.take_account_token(get_password_reset.token_hash, 'password_reset')).email;
end
$$;
revoke all on function api.get_password_reset(text) from public;
grant execute on function api.get_password_reset(text) to exchange_app;
comment on function api.get_password_reset(text) is
  'Checks a reset link before its form is shown (spends nothing): the address it is for. BST01 unknown, BST02 expired, BST03 used or replaced.';

create or replace function api.reset_password(token_hash text, password_hash text, ip text default null) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_token core.account_tokens := core.take_account_token(reset_password.token_hash, 'password_reset');
  v_until timestamptz;
begin
  if password_hash is null or length(password_hash) < 20 then
    raise exception 'Senha inválida.' using errcode = 'BSV01', column = 'password';
  end if;
  update core.account_tokens t set used_at = now() where t.id = v_token.id;
  update core.account_tokens t set revoked_at = now()
   where t.user_id = v_token.user_id and t.purpose = 'password_reset' and t.used_at is null and t.revoked_at is null;
  -- following the link proves the mailbox too
  update core.users u set password_hash = reset_password.password_hash, failed_logins = 0, locked_until = null,
                          email_verified_at = case when u.email = v_token.email then coalesce(u.email_verified_at, now())
                                                   else u.email_verified_at end
   where u.id = v_token.user_id;
  perform core.end_sessions(v_token.user_id, 'password_reset');
  v_until := core.pause_exits(v_token.user_id, core.setting('password_reset_exit_pause_hours')::int, 'password_reset');
  perform core.security_event(v_token.user_id, 'password_reset', null, ip);
  perform core.notify(v_token.user_id, 'security.password_reset',
                      'Sua senha foi redefinida pelo link enviado por e-mail e todas as sessões foram encerradas. ' ||
                      'Por segurança, saques e envios ficam pausados até ' || core.rails_when(v_until) ||
                      '. Se não foi você, fale com o suporte.', '/account/security');
  return v_token.user_id;
end
$$;
revoke all on function api.reset_password(text, text, text) from public;
grant execute on function api.reset_password(text, text, text) to exchange_app;
comment on function api.reset_password(text, text, text) is
  'Sets a new password from a reset link (single use): ends every session of the customer, pauses exits for password_reset_exit_pause_hours, logs and notifies. Returns the user id. BST01/BST02/BST03 as api.get_password_reset, BSV01 bad hash.';

-- ---------------------------------------------------------------------------
-- Sessions
-- ---------------------------------------------------------------------------

create or replace function api.start_session(user_id bigint, token_hash text, ip text default null,
                                             user_agent text default '', browser text default '')
returns table (session_id bigint, new_device boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_browser text := left(coalesce(start_session.browser, ''), 80);
  v_ip text := left(start_session.ip, 64);
  v_new boolean;
  v_session bigint;
begin
  select * into v_user from core.users u where u.id = start_session.user_id;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if token_hash is null or token_hash !~ '^[0-9a-f]{64}$' then
    raise exception 'Sessão inválida.' using errcode = 'BSV01';
  end if;
  -- new: the customer has logged in before, never from this browser at this IP
  v_new := exists (select from core.user_sessions s where s.user_id = v_user.id)
           and not exists (select from core.user_sessions s where s.user_id = v_user.id and s.browser = v_browser
                           and s.ip is not distinct from v_ip);
  insert into core.user_sessions (user_id, token_hash, ip, user_agent, browser)
  values (v_user.id, start_session.token_hash, v_ip, left(coalesce(start_session.user_agent, ''), 500), v_browser)
  returning id into v_session;
  if v_new then
    perform core.enqueue_mail(v_user.id, v_user.email, 'new_device',
                              jsonb_build_object('browser', v_browser, 'ip', coalesce(v_ip, '?'),
                                                 'at', core.rails_when(now())));
    perform core.security_event(v_user.id, 'new_device_login', v_browser, v_ip);
  end if;
  return query select v_session, v_new;
end
$$;
revoke all on function api.start_session(bigint, text, text, text, text) from public;
grant execute on function api.start_session(bigint, text, text, text, text) to exchange_app;
comment on function api.start_session(bigint, text, text, text, text) is
  'Records a login (after the password and, when on, the 2FA code were right): a session row keyed by the sha256 of the cookie''s token. A login from a browser+IP pair never seen for the customer (who logged in before) is a new device: an alert e-mail is queued. Returns the session id and whether it was new.';

create or replace function api.session_user(session_token_hash text)
returns table (user_id bigint, email text, display_name text, role text, status text, kyc_level int,
               twofactor_on boolean, unread_notifications int, email_verified boolean, session_id bigint)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_session core.user_sessions;
begin
  -- The only call of every logged-in request: cheap, and a write only once
  -- per session_touch_minutes (last_seen_at) or when the session has expired.
  select * into v_session from core.user_sessions s where s.token_hash = $1 and s.ended_at is null;
  if not found then
    return;
  end if;
  if v_session.last_seen_at < now() - make_interval(hours => core.setting('session_idle_hours')::int) then
    update core.user_sessions s set ended_at = now(), end_reason = 'expired' where s.id = v_session.id and s.ended_at is null;
    return;
  end if;
  if v_session.last_seen_at < now() - make_interval(mins => core.setting('session_touch_minutes')::int) then
    update core.user_sessions s set last_seen_at = now() where s.id = v_session.id;
  end if;
  return query
    select u.id, u.email, u.display_name, u.role, u.status, u.kyc_level, u.twofactor_on,
           (select count(*)::int from core.notifications n where n.user_id = u.id and n.read_at is null),
           u.email_verified_at is not null, v_session.id
    from core.users u where u.id = v_session.user_id and u.status <> 'closed';  -- a closed account's sessions end
end
$$;
revoke all on function api.session_user(text) from public;
grant execute on function api.session_user(text) to exchange_app;
comment on function api.session_user(text) is
  'The user of a session cookie (session_token_hash: sha256 hex of its token), with what every page needs (the columns of api.get_user, twofactor_on, unread_notifications, email_verified, session_id); no row when the session ended or sat idle past session_idle_hours (then ended as expired).';

create or replace function api.list_sessions(user_id bigint, current_session_id bigint default null)
returns table (session_id bigint, browser text, ip text, created_at timestamptz, last_seen_at timestamptz, current boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select s.id, s.browser, s.ip, s.created_at, s.last_seen_at, s.id = list_sessions.current_session_id
  from core.user_sessions s
  where s.user_id = list_sessions.user_id and s.ended_at is null
    and s.last_seen_at >= now() - make_interval(hours => core.setting('session_idle_hours')::int)
  order by s.id = list_sessions.current_session_id desc, s.last_seen_at desc, s.id desc
  limit 100
$$;
revoke all on function api.list_sessions(bigint, bigint) from public;
grant execute on function api.list_sessions(bigint, bigint) to exchange_app;
comment on function api.list_sessions(bigint, bigint) is
  'A customer''s open sessions (devices: browser, IP, when started, last seen), this device first.';

create or replace function api.end_session(user_id bigint, session_id bigint, reason text default 'ended_by_user', ip text default null)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  if reason not in ('logout', 'ended_by_user') then
    raise exception 'Motivo inválido.' using errcode = 'BSV01';
  end if;
  update core.user_sessions s set ended_at = now(), end_reason = end_session.reason
   where s.id = end_session.session_id and s.user_id = end_session.user_id and s.ended_at is null;
  if not found then
    return false;
  end if;
  if reason = 'ended_by_user' then
    perform core.security_event(end_session.user_id, 'session_ended', 'sessão ' || end_session.session_id, ip);
  end if;
  return true;
end
$$;
revoke all on function api.end_session(bigint, bigint, text, text) from public;
grant execute on function api.end_session(bigint, bigint, text, text) to exchange_app;
comment on function api.end_session(bigint, bigint, text, text) is
  'Ends one of the customer''s own sessions (reason logout, or ended_by_user from the devices list); false when it was not open or not theirs.';

create or replace function api.end_other_sessions(user_id bigint, session_id bigint, ip text default null) returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_count int := core.end_sessions(end_other_sessions.user_id, 'ended_other', end_other_sessions.session_id);
begin
  if v_count > 0 then
    perform core.security_event(end_other_sessions.user_id, 'other_sessions_ended', v_count || ' sessões', ip);
  end if;
  return v_count;
end
$$;
revoke all on function api.end_other_sessions(bigint, bigint, text) from public;
grant execute on function api.end_other_sessions(bigint, bigint, text) to exchange_app;
comment on function api.end_other_sessions(bigint, bigint, text) is
  '"End all others": ends every open session of the customer except session_id (this device); returns how many.';

-- ---------------------------------------------------------------------------
-- Anti-phishing code
-- ---------------------------------------------------------------------------

create or replace function api.set_anti_phishing_code(user_id bigint, code text, ip text default null) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_code text := nullif(btrim(coalesce(code, '')), '');
begin
  if v_code is not null and (length(v_code) not between 4 and 20 or v_code ~ '[[:cntrl:]<>&"]') then
    raise exception 'O código anti-phishing precisa ter de 4 a 20 caracteres, sem < > & ".'
      using errcode = 'BSV01', column = 'anti_phishing_code';
  end if;
  update core.users u set anti_phishing_code = v_code where u.id = set_anti_phishing_code.user_id;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  perform core.security_event(set_anti_phishing_code.user_id, 'anti_phishing_code_set',
                              case when v_code is null then 'removido' else 'definido' end, ip);
end
$$;
revoke all on function api.set_anti_phishing_code(bigint, text, text) from public;
grant execute on function api.set_anti_phishing_code(bigint, text, text) to exchange_app;
comment on function api.set_anti_phishing_code(bigint, text, text) is
  'Sets (or, empty, removes) the code every e-mail of ours shows at the top. BSV01 not 4 to 20 characters or with < > & ".';

-- ---------------------------------------------------------------------------
-- Lost 2FA device: the customer's request, the admin's review
-- ---------------------------------------------------------------------------

create or replace function api.request_twofactor_recovery(user_id bigint, reason text, ip text default null) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_id bigint;
begin
  select * into v_user from core.users u where u.id = request_twofactor_recovery.user_id for update;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if not v_user.twofactor_on then
    raise exception 'A verificação em duas etapas não está ativa nesta conta.' using errcode = 'BSS01';
  end if;
  if reason is null or length(btrim(reason)) not between 10 and 1000 then
    raise exception 'Conte em poucas palavras o que aconteceu (de 10 a 1000 caracteres).' using errcode = 'BSV01', column = 'reason';
  end if;
  if exists (select from core.twofactor_recovery_requests r where r.user_id = v_user.id and r.status = 'pending') then
    raise exception 'Já existe um pedido seu em análise. Avisaremos por e-mail.' using errcode = 'BSS01';
  end if;
  insert into core.twofactor_recovery_requests (user_id, reason, ip) values (v_user.id, btrim(reason), ip)
  returning id into v_id;
  perform core.security_event(v_user.id, 'twofactor_recovery_requested', null, ip);
  -- the real owner hears of it at once, should someone else have the password
  perform core.enqueue_mail(v_user.id, v_user.email, 'twofactor_recovery_requested', jsonb_build_object('request_id', v_id));
  return v_id;
end
$$;
revoke all on function api.request_twofactor_recovery(bigint, text, text) from public;
grant execute on function api.request_twofactor_recovery(bigint, text, text) to exchange_app;
comment on function api.request_twofactor_recovery(bigint, text, text) is
  'Files a request to remove a lost 2FA device (the app calls it only after the right password at login); the customer is mailed at once. BSS01 2FA not on or a request already pending, BSV01 reason missing.';

create or replace function api.get_twofactor_recovery(user_id bigint)
returns table (request_id bigint, status text, created_at timestamptz, reviewed_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select r.id, r.status, r.created_at, r.reviewed_at from core.twofactor_recovery_requests r
  where r.user_id = get_twofactor_recovery.user_id order by r.id desc limit 1
$$;
revoke all on function api.get_twofactor_recovery(bigint) from public;
grant execute on function api.get_twofactor_recovery(bigint) to exchange_app;
comment on function api.get_twofactor_recovery(bigint) is 'The customer''s latest 2FA recovery request and its status (no row if none).';

create or replace function admin.list_twofactor_recoveries(admin_id bigint, only_status text default 'pending')
returns table (request_id bigint, user_id bigint, email text, display_name text, reason text, ip text, request_status text,
               created_at timestamptz, reviewed_by_email text, reviewed_at timestamptz, review_reason text,
               kyc_level int, full_name text, cpf text, birth_date date, address text, kyc_verified_at timestamptz,
               kyc_submission_id bigint, kyc_submission_status text, kyc_documents int)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform core.assert_admin(admin_id);
  return query
    select r.id, u.id, u.email, u.display_name, r.reason, r.ip, r.status, r.created_at, rev.email, r.reviewed_at,
           r.review_reason, u.kyc_level, k.full_name, k.cpf, k.birth_date, k.address, k.verified_at,
           s.id, s.status, (select count(*)::int from core.kyc_documents d where d.submission_id = s.id)
    from core.twofactor_recovery_requests r
    join core.users u on u.id = r.user_id
    left join core.users rev on rev.id = r.reviewed_by
    left join core.kyc_profiles k on k.user_id = u.id
    left join lateral (select s.id, s.status from core.kyc_submissions s where s.user_id = u.id
                       order by s.status = 'approved' desc, s.id desc limit 1) s on true
    where only_status is null or r.status = only_status
    order by r.status <> 'pending', r.id desc
    limit 200;
end
$$;
revoke all on function admin.list_twofactor_recoveries(bigint, text) from public;
grant execute on function admin.list_twofactor_recoveries(bigint, text) to exchange_app, exchange_admin;
comment on function admin.list_twofactor_recoveries(bigint, text) is
  'Back office: 2FA recovery requests (only_status pending by default; NULL for all), each with the KYC identity already on file (name, CPF, birth date, address, the latest document submission) for the admin to check who asks.';

create or replace function core.review_twofactor_recovery(admin_id bigint, request_id bigint, reason text)
returns core.twofactor_recovery_requests
language plpgsql volatile as $$
declare
  v_request core.twofactor_recovery_requests;
begin
  perform core.assert_admin(admin_id);
  select * into v_request from core.twofactor_recovery_requests r where r.id = review_twofactor_recovery.request_id for update;
  if not found then
    raise exception 'Pedido não encontrado.' using errcode = 'BSN01';
  end if;
  if v_request.status <> 'pending' then
    raise exception 'Este pedido já foi analisado.' using errcode = 'BSS01';
  end if;
  if reason is null or length(btrim(reason)) < 5 then
    raise exception 'Informe o motivo (ao menos 5 caracteres).' using errcode = 'BSV01', column = 'reason';
  end if;
  return v_request;
end
$$;
comment on function core.review_twofactor_recovery(bigint, bigint, text) is
  'The checks shared by approving and rejecting a 2FA recovery request: an admin, a pending request (locked), a reason.';

create or replace function admin.approve_twofactor_recovery(admin_id bigint, request_id bigint, reason text,
                                                            totp_code text default null)
returns timestamptz
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_request core.twofactor_recovery_requests := core.review_twofactor_recovery(admin_id, request_id, reason);
  v_user core.users;
  v_until timestamptz;
begin
  perform core.assert_admin_step_up(admin_id, totp_code, 'twofactor_recovery');
  select * into v_user from core.users u where u.id = v_request.user_id for update;
  if v_user.kyc_level < 1 or not exists (select from core.kyc_profiles k where k.user_id = v_user.id) then
    raise exception 'O cliente não tem identidade confirmada (KYC): não há como verificar quem pede. Recuse o pedido.'
      using errcode = 'BSS01';
  end if;
  delete from core.user_totp t where t.user_id = v_user.id;
  delete from core.recovery_codes r where r.user_id = v_user.id;
  v_until := core.pause_exits(v_user.id, core.setting('twofactor_recovery_exit_pause_hours')::int, 'twofactor_recovered');
  perform core.end_sessions(v_user.id, 'twofactor_recovered');
  update core.twofactor_recovery_requests r
     set status = 'approved', reviewed_by = admin_id, reviewed_at = now(),
         review_reason = btrim(approve_twofactor_recovery.reason)
   where r.id = v_request.id;
  perform core.audit(admin_id, 'approve_twofactor_recovery', v_user.id, reason,
                     jsonb_build_object('request_id', v_request.id, 'exits_paused_until', v_until));
  perform core.security_event(v_user.id, 'twofactor_recovered', 'pedido ' || v_request.id, null);
  perform core.enqueue_mail(v_user.id, v_user.email, 'twofactor_recovery_approved',
                            jsonb_build_object('request_id', v_request.id, 'until', core.rails_when(v_until)));
  perform core.notify_in_app(v_user.id, 'security.twofactor_recovered',
                             'A verificação em duas etapas foi removida após a análise do seu pedido. Saques e envios ficam pausados até ' ||
                             core.rails_when(v_until) || '. Ative-a de novo com o novo celular.', '/account/security');
  return v_until;
end
$$;
revoke all on function admin.approve_twofactor_recovery(bigint, bigint, text, text) from public;
grant execute on function admin.approve_twofactor_recovery(bigint, bigint, text, text) to exchange_app, exchange_admin;
comment on function admin.approve_twofactor_recovery(bigint, bigint, text, text) is
  'Back office: approves a 2FA recovery request after checking the KYC identity (refused, BSS01, for a customer without KYC data): removes the TOTP and recovery codes, ends every session, pauses exits for twofactor_recovery_exit_pause_hours, audit-logs and mails the customer. Through the web with the admin''s fresh TOTP code (BSV01). Returns until when exits are paused.';

create or replace function admin.reject_twofactor_recovery(admin_id bigint, request_id bigint, reason text)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_request core.twofactor_recovery_requests := core.review_twofactor_recovery(admin_id, request_id, reason);
  v_email text;
begin
  update core.twofactor_recovery_requests r
     set status = 'rejected', reviewed_by = admin_id, reviewed_at = now(),
         review_reason = btrim(reject_twofactor_recovery.reason)
   where r.id = v_request.id;
  perform core.audit(admin_id, 'reject_twofactor_recovery', v_request.user_id, reason,
                     jsonb_build_object('request_id', v_request.id));
  perform core.security_event(v_request.user_id, 'twofactor_recovery_rejected', btrim(reason), null);
  select u.email into v_email from core.users u where u.id = v_request.user_id;
  perform core.enqueue_mail(v_request.user_id, v_email, 'twofactor_recovery_rejected',
                            jsonb_build_object('request_id', v_request.id, 'reason', btrim(reason)));
end
$$;
revoke all on function admin.reject_twofactor_recovery(bigint, bigint, text) from public;
grant execute on function admin.reject_twofactor_recovery(bigint, bigint, text) to exchange_app, exchange_admin;
comment on function admin.reject_twofactor_recovery(bigint, bigint, text) is
  'Back office: rejects a 2FA recovery request with a reason (told to the customer by e-mail); audit-logged. 2FA stays as it was.';

-- ---------------------------------------------------------------------------
-- The outbox, for the worker (exchange_worker)
-- ---------------------------------------------------------------------------

create or replace function admin.claim_mail(max_rows int default 20)
returns table (mail_id bigint, user_id bigint, recipient text, kind text, params jsonb, display_name text,
               anti_phishing_code text, needs_token boolean, attempts int)
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  -- Claimed rows are leased for two minutes: a run that dies mid-way is
  -- retried by a later one, never lost.
  with due as (
    select m.id from core.mail_outbox m
    where m.status = 'pending' and m.next_try_at <= now()
    order by m.next_try_at, m.id
    limit least(greatest(max_rows, 1), 200)
    for update skip locked),
  claimed as (
    update core.mail_outbox m set attempts = m.attempts + 1, next_try_at = now() + interval '2 minutes'
    from due where m.id = due.id
    returning m.*)
  select c.id, c.user_id, c.recipient, c.kind, c.params, u.display_name, u.anti_phishing_code,
         exists (select from core.account_tokens t where t.mail_id = c.id), c.attempts
  from claimed c left join core.users u on u.id = c.user_id
  order by c.id
$$;
revoke all on function admin.claim_mail(int) from public;
grant execute on function admin.claim_mail(int) to exchange_worker, exchange_admin;
comment on function admin.claim_mail(int) is
  'The worker''s next e-mails to send (pending and due), leased for two minutes, with the recipient''s name and anti-phishing code and whether the mail carries a token link (admin.issue_mail_token first).';

create or replace function admin.issue_mail_token(mail_id bigint, token_hash text) returns timestamptz
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_token core.account_tokens;
begin
  if token_hash is null or token_hash !~ '^[0-9a-f]{64}$' then
    raise exception 'Hash de token inválido.' using errcode = 'BSV01';
  end if;
  select * into v_token from core.account_tokens t where t.mail_id = issue_mail_token.mail_id for update;
  if not found then
    raise exception 'Este e-mail não leva token.' using errcode = 'BSN01';
  end if;
  if v_token.used_at is not null or v_token.revoked_at is not null then
    -- replaced by a newer link meanwhile: this mail is not sent
    update core.mail_outbox m set status = 'cancelled' where m.id = issue_mail_token.mail_id and m.status = 'pending';
    return null;
  end if;
  -- a resend (after a crash) replaces the hash: only the latest link works
  update core.account_tokens t
     set token_hash = issue_mail_token.token_hash, issued_at = now(),
         expires_at = now() + case t.purpose
           when 'password_reset' then make_interval(mins => core.setting('password_reset_minutes')::int)
           else make_interval(hours => core.setting('email_verification_hours')::int) end
   where t.id = v_token.id
  returning t.expires_at into v_token.expires_at;
  return v_token.expires_at;
end
$$;
revoke all on function admin.issue_mail_token(bigint, text) from public;
grant execute on function admin.issue_mail_token(bigint, text) to exchange_worker, exchange_admin;
comment on function admin.issue_mail_token(bigint, text) is
  'The worker, about to send a link mail, stores the sha256 of the raw token it drew; the link expires from now. Returns the expiry, or NULL when the link was replaced or used meanwhile (the mail is then cancelled, not sent).';

create or replace function admin.record_mail_outcome(mail_id bigint, sent boolean, error text default null) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_mail core.mail_outbox;
begin
  select * into v_mail from core.mail_outbox m where m.id = record_mail_outcome.mail_id for update;
  if not found then
    raise exception 'E-mail não encontrado.' using errcode = 'BSN01';
  end if;
  if v_mail.status <> 'pending' then
    return v_mail.status;  -- a repeat: the first outcome stands
  end if;
  if sent then
    update core.mail_outbox m set status = 'sent', sent_at = now(), last_error = null where m.id = v_mail.id;
    return 'sent';
  end if;
  if v_mail.attempts >= core.setting('mail_max_attempts')::int then
    update core.mail_outbox m set status = 'failed', last_error = left(error, 500) where m.id = v_mail.id;
    return 'failed';
  end if;
  update core.mail_outbox m
     set last_error = left(error, 500),
         next_try_at = now() + least(make_interval(mins => (2 ^ least(v_mail.attempts, 10))::int), interval '1 hour')
   where m.id = v_mail.id;
  return 'pending';
end
$$;
revoke all on function admin.record_mail_outcome(bigint, boolean, text) from public;
grant execute on function admin.record_mail_outcome(bigint, boolean, text) to exchange_worker, exchange_admin;
comment on function admin.record_mail_outcome(bigint, boolean, text) is
  'The worker records what SMTP said: sent, or an error (retried with back-off, given up as failed after mail_max_attempts). Idempotent: once sent, failed or cancelled, a repeat changes nothing. Returns the status.';

create or replace function admin.list_mail(admin_id bigint, max_rows int default 50)
returns table (mail_id bigint, user_id bigint, recipient text, kind text, status text, attempts int, last_error text,
               created_at timestamptz, sent_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform core.assert_admin(admin_id);
  return query select m.id, m.user_id, m.recipient, m.kind, m.status, m.attempts, m.last_error, m.created_at, m.sent_at
               from core.mail_outbox m order by m.id desc limit least(greatest(max_rows, 1), 500);
end
$$;
revoke all on function admin.list_mail(bigint, int) from public;
grant execute on function admin.list_mail(bigint, int) to exchange_app, exchange_admin;
comment on function admin.list_mail(bigint, int) is
  'Back office: the latest e-mails of the outbox and their delivery status (never their links). Healthy: nothing failed, nothing pending for long.';
