-- fees.sql: the public schedule of fees and limits (the /tarifas page).
--
-- One reader, api.get_fee_schedule, over the configuration the other domains
-- charge and enforce from: core.settings (desk spread and fee, PIX minimums,
-- maturation, cooling-off), core.p2p_fees, core.crypto_networks (on-chain
-- fees and minimums, refreshed from Binance) and core.kyc_limits. Called by
-- webapp/fees (no login needed) and by the P2P offer form for the maker fee.

create or replace function api.get_fee_schedule()
returns table (section text, name text, currency text, network text, kyc_level int, value numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select 'market', s.name, null, null, null::int, s.value::numeric
  from core.settings s
  where s.name in ('market_spread_percent', 'market_fee_percent', 'market_binance_commission_percent',
                   'quote_ttl_seconds')
  union all
  select 'p2p', f.kind, f.crypto, null, null, f.percent
  from core.p2p_fees p
  cross join lateral (values (p.crypto, 'maker_percent', p.maker_percent),
                             (p.crypto, 'taker_percent', p.taker_percent)) f (crypto, kind, percent)
  union all
  select 'p2p', s.name, null, null, null, s.value::numeric
  from core.settings s
  where s.name in ('p2p_release_window_minutes', 'p2p_window_pix', 'p2p_window_ted', 'p2p_window_pix_confirmed')
  union all
  select 'crypto', f.kind, n.coin, n.network, null, f.amount
  from core.crypto_networks n
  cross join lateral (values ('withdraw_fee', n.withdraw_fee), ('withdraw_min', n.withdraw_min),
                             ('min_confirm', n.min_confirm::numeric)) f (kind, amount)
  where n.withdraw_enable or f.kind = 'min_confirm'
  union all
  select 'pix', s.name, 'BRL', null, null, s.value::numeric
  from core.settings s
  where s.name in ('deposit_min_brl', 'deposit_max_brl', 'withdrawal_min_brl', 'withdrawal_approval_threshold_brl',
                   'transfer_fee_percent', 'deposit_maturation_hours', 'withdrawal_destination_cooloff_hours',
                   'crypto_destination_cooloff_hours')
  union all
  select 'limits', f.kind, 'BRL', null, l.kyc_level, f.amount
  from core.kyc_limits l
  cross join lateral (values ('daily_deposit_brl', l.daily_deposit_brl), ('daily_withdrawal_brl', l.daily_withdrawal_brl),
                             ('daily_crypto_withdrawal_brl', l.daily_crypto_withdrawal_brl),
                             ('daily_market_brl', l.daily_market_brl), ('daily_p2p_brl', l.daily_p2p_brl),
                             ('per_trade_max_brl', l.per_trade_max_brl)) f (kind, amount)
$$;
revoke all on function api.get_fee_schedule() from public;
grant execute on function api.get_fee_schedule() to exchange_app;
comment on function api.get_fee_schedule() is
  'Every fee and limit a customer meets, as (section, name, currency, network, kyc_level, value) rows read from the configuration the domains charge from: market (core.settings spread, fee and Binance commission in percent, quote validity), p2p (core.p2p_fees maker_percent and taker_percent per crypto; release and payment windows in minutes), crypto (core.crypto_networks withdraw_fee and withdraw_min per coin and network where withdrawals are enabled, min_confirm for deposits), pix (BRL deposit and withdrawal minimums and maximum, approval threshold, transfer fee percent, maturation and cooling-off hours) and limits (core.kyc_limits per KYC level). PIX deposits and withdrawals carry no fee: no function charges one.';
