-- p2p/reputation.sql: ratings, public profiles and blocks.
-- Overview of the P2P domain in p2p/core.sql.

-- ---------------------------------------------------------------------------
-- Reputation and blocks
-- ---------------------------------------------------------------------------

create function api.rate_p2p_trade(user_id bigint, trade_id bigint, positive boolean, comment text default '')
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_other bigint;
begin
  v_trade := core.p2p_lock_trade(rate_p2p_trade.trade_id, rate_p2p_trade.user_id);
  if v_trade.status <> 'COMPLETED' then
    raise exception 'Só é possível avaliar uma negociação concluída.' using errcode = 'BSS01';
  end if;
  if positive is null then
    raise exception 'Escolha positiva ou negativa.' using errcode = 'BSV01', column = 'positive';
  end if;
  if length(coalesce(comment, '')) > 500 then
    raise exception 'Comentário: até 500 caracteres.' using errcode = 'BSV01', column = 'comment';
  end if;
  v_other := core.p2p_other(v_trade, rate_p2p_trade.user_id);
  insert into core.p2p_ratings (trade_id, rater_id, rated_id, positive, comment)
  values (v_trade.id, rate_p2p_trade.user_id, v_other, rate_p2p_trade.positive, coalesce(btrim(rate_p2p_trade.comment), ''))
  on conflict do nothing;
  if not found then
    raise exception 'Você já avaliou esta negociação.' using errcode = 'BSS01';
  end if;
  insert into core.p2p_reputation as r (user_id, positive_ratings, negative_ratings)
  values (v_other, rate_p2p_trade.positive::int, (not rate_p2p_trade.positive)::int)
  on conflict (user_id) do update
    set positive_ratings = r.positive_ratings + excluded.positive_ratings,
        negative_ratings = r.negative_ratings + excluded.negative_ratings, updated_at = now();
  perform core.p2p_notify(v_trade, v_other, 'p2p.rated',
    'você recebeu uma avaliação ' || case when positive then 'positiva' else 'negativa' end || '.');
end
$$;
revoke all on function api.rate_p2p_trade(bigint, bigint, boolean, text) from public;
grant execute on function api.rate_p2p_trade(bigint, bigint, boolean, text) to exchange_app;
comment on function api.rate_p2p_trade(bigint, bigint, boolean, text) is
  'Rates the counterparty of a completed trade once (positive or negative, with a comment). BSS01 not completed or already rated, BSN01 not a party.';

create function api.get_p2p_profile(user_id bigint, profile_user_id bigint)
returns table (id bigint, display_name text, member_since timestamptz, kyc_level int,
               completed_trades bigint, faulted_trades bigint, completion_rate numeric, avg_release_seconds numeric,
               positive_ratings bigint, negative_ratings bigint, blocked_by_me boolean, is_me boolean)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
  return query
  select u.id, u.display_name, u.created_at, u.kyc_level, s.completed_trades, s.faulted_trades, s.completion_rate,
         s.avg_release_seconds, s.positive_ratings, s.negative_ratings,
         exists (select from core.p2p_blocks k where k.user_id = get_p2p_profile.user_id and k.blocked_user_id = u.id),
         u.id = get_p2p_profile.user_id
  from core.users u cross join lateral core.p2p_user_stats(u.id) s
  where u.id = get_p2p_profile.profile_user_id and u.role = 'customer';
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function api.get_p2p_profile(bigint, bigint) from public;
grant execute on function api.get_p2p_profile(bigint, bigint) to exchange_app;
comment on function api.get_p2p_profile(bigint, bigint) is
  'A customer''s P2P reputation as another customer sees it: completed trades, trades lost by their fault, completion rate, average release time, ratings, and whether the viewer blocked them.';

create function api.list_p2p_ratings(profile_user_id bigint, max_rows int default 20)
returns table (trade_id bigint, rater_name text, positive boolean, comment text, created_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select r.trade_id, u.display_name, r.positive, r.comment, r.created_at
  from core.p2p_ratings r join core.users u on u.id = r.rater_id
  where r.rated_id = list_p2p_ratings.profile_user_id
  order by r.created_at desc
  limit least(greatest(max_rows, 1), 100)
$$;
revoke all on function api.list_p2p_ratings(bigint, int) from public;
grant execute on function api.list_p2p_ratings(bigint, int) to exchange_app;
comment on function api.list_p2p_ratings(bigint, int) is 'The latest ratings a customer received, newest first.';

create function api.set_p2p_block(user_id bigint, blocked_user_id bigint, blocked boolean)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
  if set_p2p_block.user_id = set_p2p_block.blocked_user_id then
    raise exception 'Você não pode bloquear a si mesmo.' using errcode = 'BSV01';
  end if;
  if not exists (select from core.users u where u.id = set_p2p_block.blocked_user_id and u.role = 'customer') then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if blocked then
    insert into core.p2p_blocks (user_id, blocked_user_id)
    values (set_p2p_block.user_id, set_p2p_block.blocked_user_id) on conflict do nothing;
  else
    delete from core.p2p_blocks k
     where k.user_id = set_p2p_block.user_id and k.blocked_user_id = set_p2p_block.blocked_user_id;
  end if;
  return blocked;
end
$$;
revoke all on function api.set_p2p_block(bigint, bigint, boolean) from public;
grant execute on function api.set_p2p_block(bigint, bigint, boolean) to exchange_app;
comment on function api.set_p2p_block(bigint, bigint, boolean) is
  'Blocks (true) or unblocks (false) another customer: while blocked, each one''s offers are hidden from the other and neither can take the other''s offers. Trades already open continue.';

create function api.list_p2p_blocks(user_id bigint)
returns table (blocked_user_id bigint, display_name text, created_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select k.blocked_user_id, u.display_name, k.created_at
  from core.p2p_blocks k join core.users u on u.id = k.blocked_user_id
  where k.user_id = list_p2p_blocks.user_id order by k.created_at desc
$$;
revoke all on function api.list_p2p_blocks(bigint) from public;
grant execute on function api.list_p2p_blocks(bigint) to exchange_app;
comment on function api.list_p2p_blocks(bigint) is 'The customers a customer has blocked.';
