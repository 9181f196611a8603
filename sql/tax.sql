-- tax.sql: the yearly tax statement (IRPF) of a customer's crypto.
--
-- Read from the ledger: every entry that changed what the customer holds of
-- a crypto (available + locked; a hold moving between the two changes
-- nothing) is a movement, valued in BRL from the row that caused it:
--
--   acquisitions  market_buy    desk buy: BRL paid, spread and fee included (market_orders.brl_amount)
--                 p2p_release   P2P buy: the trade's BRL (the buyer's fee is crypto not received)
--                 transfer      received from another customer: cost 0, marked zero_cost
--                 crypto_deposit on-chain deposit: cost 0, marked zero_cost (the customer knows the real cost)
--                 adjustment, anything else: cost 0, marked zero_cost
--   disposals     market_sell   desk sell: BRL received, net of spread and fee (alienação)
--   (alienações)  p2p_release   P2P sell: the trade's BRL; the seller's fee is crypto given up with it,
--                               so it enters the cost and the proceeds are net of it (alienação)
--   reductions    transfer      sent to another customer: leaves at average cost, no proceeds,
--   (not sales)                 shown apart (the Receita may see a gift or a payment: the customer decides)
--                 crypto_withdrawal  to the customer's own wallet: not a disposal; the coins keep their
--                               average cost, which is shown so the customer declares them where they are.
--                               The network fee is withdrawn with them at average cost (treating each
--                               fee as a disposal at zero proceeds is more precision than it is worth)
--                 adjustment, anything else: at average cost, no proceeds
--
-- Average cost (custo médio ponderado, as the Receita Federal asks for
-- crypto): an acquisition adds its quantity and cost; anything leaving takes
-- cost × quantity / position (the whole cost when the position empties).
-- Numbers stay exact numeric; the one division is kept to 10 decimal places
-- of a real (far below a centavo). BRL are rounded to the centavo, half up,
-- only when shown. Time is Brazil's (America/Sao_Paulo): 31/12 means the end
-- of that day in Brasília. No tax due is computed.

create or replace function core.tax_year_bounds(year int, out starts_at timestamptz, out ends_at timestamptz)
language plpgsql immutable as $$
begin
  if year is null or year not between 2000 and 2200 then
    raise exception 'Ano inválido.' using errcode = 'BSV01', column = 'year';
  end if;
  starts_at := make_timestamptz(year, 1, 1, 0, 0, 0, 'America/Sao_Paulo');
  ends_at := make_timestamptz(year + 1, 1, 1, 0, 0, 0, 'America/Sao_Paulo');
end
$$;
comment on function core.tax_year_bounds(int) is
  'The calendar year in Brazil time: [1 January 00:00, next 1 January 00:00) in America/Sao_Paulo. BSV01 outside 2000–2200.';

create or replace function core.tax_ledger(user_id bigint, until timestamptz)
returns table (entry_id bigint, occurred_at timestamptz, currency text, kind text, disposal boolean,
               zero_cost boolean, quantity numeric, brl_value numeric, cost numeric, gain numeric,
               position_quantity numeric, position_cost numeric)
language plpgsql stable as $$
#variable_conflict use_column
declare
  v record;
  v_codes text[] := array(select c.code from core.currencies c where c.kind = 'crypto' order by c.code);
  v_qty numeric[] := array_fill(0::numeric, array[cardinality(v_codes)]);   -- position per currency
  v_cost numeric[] := array_fill(0::numeric, array[cardinality(v_codes)]);
  i int;
  q numeric;
  c numeric;
  v_out numeric;
begin
  for v in
    -- (the BRL of an entry from the customer's own orders and trades, joined
    -- once, not looked up per movement: neither entry column is indexed)
    select m.entry_id, m.created_at, m.currency, m.entry_kind, m.net, o.brl_amount as market_brl,
           t.brl_amount as p2p_brl
    from (select p.entry_id, e.created_at, e.kind as entry_kind, p.currency, sum(p.amount) as net
          from core.accounts a
          join core.currencies cur on cur.code = a.currency and cur.kind = 'crypto'
          join core.postings p on p.account_id = a.id
          join core.entries e on e.id = p.entry_id
          where a.user_id = tax_ledger.user_id and e.created_at < tax_ledger.until
          group by p.entry_id, e.created_at, e.kind, p.currency
          having sum(p.amount) <> 0) m
    left join core.market_orders o on o.user_id = tax_ledger.user_id and o.entry_id = m.entry_id
    left join (select t.release_entry_id, t.brl_amount from core.p2p_trades t where t.buyer_id = tax_ledger.user_id
               union all
               select t.release_entry_id, t.brl_amount from core.p2p_trades t where t.seller_id = tax_ledger.user_id) t
      on t.release_entry_id = m.entry_id
    order by m.created_at, m.entry_id, m.currency
  loop
    i := array_position(v_codes, v.currency);
    q := v_qty[i];
    c := v_cost[i];
    entry_id := v.entry_id; occurred_at := v.created_at; currency := v.currency;
    if v.net > 0 then
      kind := case v.entry_kind when 'market_buy' then 'buy_desk'
                                when 'p2p_release' then 'buy_p2p'
                                when 'transfer' then 'transfer_in'
                                when 'crypto_deposit' then 'deposit_onchain'
                                else 'other_in' end;
      brl_value := coalesce(case kind when 'buy_desk' then v.market_brl when 'buy_p2p' then v.p2p_brl end, 0);
      zero_cost := kind not in ('buy_desk', 'buy_p2p');
      disposal := false;
      quantity := v.net;
      cost := brl_value;
      gain := null;
      q := q + v.net;
      c := c + brl_value;
    else
      v_out := -v.net;
      kind := case v.entry_kind when 'market_sell' then 'sell_desk'
                                when 'p2p_release' then 'sell_p2p'
                                when 'transfer' then 'transfer_out'
                                when 'crypto_withdrawal' then 'withdrawal_onchain'
                                else 'other_out' end;
      disposal := kind in ('sell_desk', 'sell_p2p');
      zero_cost := false;
      quantity := v_out;
      cost := case when v_out >= q then c else round(c * v_out / q, 10) end;
      brl_value := case kind when 'sell_desk' then v.market_brl when 'sell_p2p' then v.p2p_brl end;
      gain := case when disposal then brl_value - cost end;
      q := q - v_out;
      c := case when q <= 0 then 0 else c - cost end;
    end if;
    position_quantity := q;
    position_cost := c;
    v_qty[i] := q;
    v_cost[i] := c;
    return next;
  end loop;
end
$$;
comment on function core.tax_ledger(bigint, timestamptz) is
  'Every change of a customer''s crypto holdings before `until`, in order, with its tax meaning (kind: buy_desk, buy_p2p, transfer_in, deposit_onchain, other_in; sell_desk, sell_p2p (disposal), transfer_out, withdrawal_onchain, other_out), the BRL paid or received, the cost added or taken out at the weighted average, the gain of a disposal, and the position (quantity, total cost) after it. See the head of sql/tax.sql for the rules.';

create or replace function api.tax_movements(user_id bigint, year int)
returns table (entry_id bigint, occurred_at timestamptz, currency text, kind text, disposal boolean,
               zero_cost boolean, quantity numeric, brl_value numeric, cost numeric, gain numeric,
               position_quantity numeric, position_cost numeric, average_cost numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select l.entry_id, l.occurred_at, l.currency, l.kind, l.disposal, l.zero_cost, l.quantity, l.brl_value, l.cost,
         l.gain, l.position_quantity, l.position_cost,
         case when l.position_quantity > 0 then round(l.position_cost / l.position_quantity, 10) end
  from core.tax_year_bounds(tax_movements.year) b,
       core.tax_ledger(tax_movements.user_id, b.ends_at) l
  where l.occurred_at >= b.starts_at
  order by l.occurred_at, l.entry_id, l.currency
$$;
revoke all on function api.tax_movements(bigint, int) from public;
grant execute on function api.tax_movements(bigint, int) to exchange_app;
comment on function api.tax_movements(bigint, int) is
  'The year''s movements of the customer''s crypto for the tax statement (core.tax_ledger within the calendar year, Brazil time), with the average cost per unit after each. Disposals (alienações) are the rows with disposal = true. BSV01 invalid year.';

create or replace function api.tax_positions(user_id bigint, year int)
returns table (currency text, currency_name text, irpf_group text, irpf_code text, irpf_description text,
               previous_quantity numeric, previous_cost numeric, quantity numeric, total_cost numeric,
               average_cost numeric, acquired_quantity numeric, acquired_cost numeric, zero_cost_quantity numeric,
               disposed_quantity numeric, proceeds numeric, disposed_cost numeric, gain numeric,
               moved_out_quantity numeric, moved_out_cost numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  with b as (select * from core.tax_year_bounds(tax_positions.year)),
  l as (select l.* from b, core.tax_ledger(tax_positions.user_id, b.ends_at) l),
  last_before as (select distinct on (l.currency) l.currency, l.position_quantity, l.position_cost
                  from l, b where l.occurred_at < b.starts_at order by l.currency, l.occurred_at desc, l.entry_id desc),
  last_in as (select distinct on (l.currency) l.currency, l.position_quantity, l.position_cost
              from l order by l.currency, l.occurred_at desc, l.entry_id desc),
  year_sums as (
    select l.currency,
           sum(l.quantity) filter (where l.kind in ('buy_desk', 'buy_p2p', 'transfer_in', 'deposit_onchain', 'other_in')) as acquired_quantity,
           sum(l.cost) filter (where l.kind in ('buy_desk', 'buy_p2p', 'transfer_in', 'deposit_onchain', 'other_in')) as acquired_cost,
           sum(l.quantity) filter (where l.zero_cost) as zero_cost_quantity,
           sum(l.quantity) filter (where l.disposal) as disposed_quantity,
           sum(l.brl_value) filter (where l.disposal) as proceeds,
           sum(l.cost) filter (where l.disposal) as disposed_cost,
           sum(l.gain) filter (where l.disposal) as gain,
           sum(l.quantity) filter (where l.kind in ('transfer_out', 'withdrawal_onchain', 'other_out')) as moved_out_quantity,
           sum(l.cost) filter (where l.kind in ('transfer_out', 'withdrawal_onchain', 'other_out')) as moved_out_cost
    from l, b where l.occurred_at >= b.starts_at group by l.currency)
  select c.code, c.name, coalesce(t.irpf_group, '08'), coalesce(t.irpf_code, '02'),
         coalesce(t.description, 'Outros criptoativos: ' || c.name || ' (' || c.code || ')'),
         coalesce(p.position_quantity, 0), coalesce(p.position_cost, 0),
         coalesce(n.position_quantity, 0), coalesce(n.position_cost, 0),
         case when n.position_quantity > 0 then round(n.position_cost / n.position_quantity, 10) end,
         coalesce(s.acquired_quantity, 0), coalesce(s.acquired_cost, 0), coalesce(s.zero_cost_quantity, 0),
         coalesce(s.disposed_quantity, 0), coalesce(s.proceeds, 0), coalesce(s.disposed_cost, 0),
         coalesce(s.gain, 0), coalesce(s.moved_out_quantity, 0), coalesce(s.moved_out_cost, 0)
  from core.currencies c
  left join core.tax_asset_codes t on t.currency = c.code
  left join last_before p on p.currency = c.code
  left join last_in n on n.currency = c.code
  left join year_sums s on s.currency = c.code
  where c.kind = 'crypto'
  order by c.sort_order
$$;
revoke all on function api.tax_positions(bigint, int) from public;
grant execute on function api.tax_positions(bigint, int) to exchange_app;
comment on function api.tax_positions(bigint, int) is
  'Per crypto (every crypto of core.currencies): the IRPF Bens e Direitos group/code (core.tax_asset_codes), the position and its total cost on 31/12 of the year before and of the year (Brazil time), the average cost per unit, and the year''s totals: acquired (and how much of it at zero cost), disposed (proceeds, cost, gain) and moved out without a sale (transfers sent, withdrawals to own wallets, at average cost). BSV01 invalid year.';

create or replace function api.tax_monthly_sales(user_id bigint, year int)
returns table (month int, disposals int, proceeds numeric, cost numeric, gain numeric, exemption_limit numeric,
               within_exemption boolean)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  with b as (select * from core.tax_year_bounds(tax_monthly_sales.year)),
  d as (select extract(month from l.occurred_at at time zone 'America/Sao_Paulo')::int as month, l.*
        from b, core.tax_ledger(tax_monthly_sales.user_id, b.ends_at) l
        where l.occurred_at >= b.starts_at and l.disposal)
  select m, count(d.entry_id)::int, coalesce(sum(d.brl_value), 0), coalesce(sum(d.cost), 0), coalesce(sum(d.gain), 0),
         s.value::numeric, coalesce(sum(d.brl_value), 0) <= s.value::numeric
  from generate_series(1, 12) m
  left join d on d.month = m
  cross join core.settings s
  where s.name = 'tax_monthly_exemption_brl'
  group by m, s.value
  order by m
$$;
revoke all on function api.tax_monthly_sales(bigint, int) from public;
grant execute on function api.tax_monthly_sales(bigint, int) to exchange_app;
comment on function api.tax_monthly_sales(bigint, int) is
  'The year''s crypto sales month by month (all cryptos together, Brazil time): number of disposals, proceeds, cost at average, gain, and whether the total stays within the monthly exemption of the rule in force until 2025 (setting tax_monthly_exemption_brl; informational only, no tax computed: the GCAP figures). BSV01 invalid year.';

create or replace function api.tax_years(user_id bigint)
returns table (year int)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  -- Years in which the customer's crypto holdings changed, and the current one.
  select distinct y from (
    select extract(year from e.created_at at time zone 'America/Sao_Paulo')::int as y
    from core.accounts a
    join core.currencies c on c.code = a.currency and c.kind = 'crypto'
    join core.postings p on p.account_id = a.id
    join core.entries e on e.id = p.entry_id
    where a.user_id = tax_years.user_id
    union all
    select extract(year from now() at time zone 'America/Sao_Paulo')::int) s (y)
  order by y desc
$$;
revoke all on function api.tax_years(bigint) from public;
grant execute on function api.tax_years(bigint) to exchange_app;
comment on function api.tax_years(bigint) is 'Calendar years (Brazil time) with crypto movements of the customer, plus the current year, newest first: the years a tax statement can be asked for.';
