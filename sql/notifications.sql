-- notifications.sql: in-app notifications and the per-KYC-level limits.
--
-- Domain functions call core.notify on every status change a customer should
-- hear about, and core.enforce_daily_limit / core.enforce_trade_limit before
-- moving money. The notification centre (webapp) reads them through api.*.

create or replace function core.format_brl(amount numeric) returns text
language sql immutable as $$
  select 'R$ ' || translate(to_char(round(amount, 2), 'FM999,999,999,999,990.00'), ',.', '.,')
$$;
comment on function core.format_brl(numeric) is 'R$ 1.234,56: an amount the Brazilian way, for messages.';

create or replace function core.notify(user_id bigint, kind text, message text, link text default null)
returns bigint
language sql volatile as $$
  insert into core.notifications (user_id, kind, message, link)
  values (notify.user_id, notify.kind, notify.message, notify.link)
  returning id
$$;
comment on function core.notify(bigint, text, text, text) is 'Adds an in-app notification for a user (called by domain functions on every event).';

create or replace function core.enforce_daily_limit(user_id bigint, limit_name text, used_today numeric, amount numeric)
returns void
language plpgsql stable as $$
declare
  v_level int;
  v_limit numeric;
  v_how text;
  v_label text := case limit_name
    when 'daily_deposit_brl' then 'depósito'
    when 'daily_withdrawal_brl' then 'saque'
    when 'daily_crypto_withdrawal_brl' then 'saque de cripto'
    when 'daily_market_brl' then 'compra e venda'
    when 'daily_p2p_brl' then 'negociação P2P'
    else limit_name end;
begin
  select u.kyc_level into v_level from core.users u where u.id = enforce_daily_limit.user_id;
  execute format('select %I, how_to_raise from core.kyc_limits where kyc_level = $1', limit_name)
    into v_limit, v_how using v_level;
  if coalesce(used_today, 0) + amount > v_limit then
    raise exception 'Limite diário de % do nível % é %; hoje você já usou %, restam %.',
      v_label, v_level, core.format_brl(v_limit), core.format_brl(coalesce(used_today, 0)),
      core.format_brl(greatest(v_limit - coalesce(used_today, 0), 0))
      using errcode = 'BSL01', column = 'amount', hint = v_how;
  end if;
end
$$;
comment on function core.enforce_daily_limit(bigint, text, numeric, numeric) is
  'Raises BSL01 (naming the limit, what is left and, in the hint, how to raise it) when used_today + amount exceeds the user''s KYC-level limit of that name in core.kyc_limits.';

create or replace function core.enforce_trade_limit(user_id bigint, amount_brl numeric) returns void
language plpgsql stable as $$
declare
  v_level int;
  v_limit numeric;
  v_how text;
begin
  select u.kyc_level into v_level from core.users u where u.id = enforce_trade_limit.user_id;
  select l.per_trade_max_brl, l.how_to_raise into v_limit, v_how from core.kyc_limits l where l.kyc_level = v_level;
  if amount_brl > v_limit then
    raise exception 'O valor máximo por operação no nível % é %.', v_level, core.format_brl(v_limit)
      using errcode = 'BSL01', column = 'amount', hint = v_how;
  end if;
end
$$;
comment on function core.enforce_trade_limit(bigint, numeric) is 'Raises BSL01 when one operation exceeds the user''s per-trade maximum.';

create or replace function api.list_notifications(user_id bigint, max_rows int default 30)
returns table (notification_id bigint, kind text, message text, link text, created_at timestamptz, read boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select n.id, n.kind, n.message, n.link, n.created_at, n.read_at is not null
  from core.notifications n where n.user_id = list_notifications.user_id
  order by n.id desc limit least(greatest(max_rows, 1), 200)
$$;
revoke all on function api.list_notifications(bigint, int) from public;
grant execute on function api.list_notifications(bigint, int) to exchange_app;
comment on function api.list_notifications(bigint, int) is 'A user''s latest notifications, newest first.';

create or replace function api.count_unread_notifications(user_id bigint)
returns bigint
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select count(*) from core.notifications n where n.user_id = count_unread_notifications.user_id and n.read_at is null
$$;
revoke all on function api.count_unread_notifications(bigint) from public;
grant execute on function api.count_unread_notifications(bigint) to exchange_app;
comment on function api.count_unread_notifications(bigint) is 'Number of unread notifications (the badge in the navigation).';

create or replace function api.mark_notifications_read(user_id bigint)
returns bigint
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  with marked as (
    update core.notifications n set read_at = now()
    where n.user_id = mark_notifications_read.user_id and n.read_at is null returning 1)
  select count(*) from marked
$$;
revoke all on function api.mark_notifications_read(bigint) from public;
grant execute on function api.mark_notifications_read(bigint) to exchange_app;
comment on function api.mark_notifications_read(bigint) is 'Marks all of a user''s notifications read; returns how many.';

create or replace function api.get_limits(user_id bigint)
returns table (kyc_level int, daily_deposit_brl numeric, daily_withdrawal_brl numeric, daily_market_brl numeric,
               daily_p2p_brl numeric, per_trade_max_brl numeric, how_to_raise text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select l.kyc_level, l.daily_deposit_brl, l.daily_withdrawal_brl, l.daily_market_brl, l.daily_p2p_brl,
         l.per_trade_max_brl, l.how_to_raise
  from core.users u join core.kyc_limits l on l.kyc_level = u.kyc_level where u.id = get_limits.user_id
$$;
revoke all on function api.get_limits(bigint) from public;
grant execute on function api.get_limits(bigint) to exchange_app;
comment on function api.get_limits(bigint) is 'The limits of the user''s current KYC level.';
