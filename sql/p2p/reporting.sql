-- p2p/reporting.sql: the P2P reporting views (escrow mismatches, trades, PIX refunds due).
-- Overview of the P2P domain in p2p/core.sql.

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

create view reporting.p2p_escrow_mismatches as
select 'trade' as kind, t.id, t.status, t.hold_id, h.status as hold_status, h.amount as held,
       t.crypto_amount + t.seller_fee as expected
from core.p2p_trades t left join core.holds h on h.id = t.hold_id
where (t.status in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW')
       and (h.status is distinct from 'open' or h.amount <> t.crypto_amount + t.seller_fee))
   or (t.status in ('COMPLETED', 'CANCELLED', 'REFUNDED') and h.status = 'open')
union all
select 'offer', o.id, o.status, o.hold_id, h.status, h.amount, o.remaining_amount
from core.p2p_offers o left join core.holds h on h.id = o.hold_id
where (o.side = 'SELL' and o.status in ('active', 'paused')
       and (h.status is distinct from 'open' or h.amount < o.remaining_amount))
   or (o.status in ('cancelled', 'expired') and o.hold_id is not null);
comment on view reporting.p2p_escrow_mismatches is
  'P2P trades in progress whose escrow hold is not open for exactly amount + seller fee, closed trades with an open hold, open SELL offers whose hold does not cover the remaining amount, closed offers still pointing at a hold. Healthy: empty.';

create view reporting.p2p_trades as
select t.id as trade_id, t.created_at, t.status, t.crypto, t.crypto_amount, t.price, t.brl_amount, t.payment_method,
       t.seller_fee + t.buyer_fee as fees, t.buyer_id, t.seller_id, t.maker_id, t.taker_id, t.paid_at, t.completed_at,
       t.cancel_reason, t.resolution, t.resolved_by, t.pix_paid_amount
from core.p2p_trades t;
comment on view reporting.p2p_trades is
  'Every P2P trade (no chat, no bank details). Healthy: no OPEN trade far past its payment_deadline (the sweeper cancels them), fees = seller_fee + buyer_fee as journaled to fee revenue.';

create view reporting.p2p_pix_refunds_due as
select r.provider_payment_id, r.trade_id, r.amount, p.payer_cpf, r.status, r.reason, r.attempts, r.last_error,
       r.created_at
from core.pix_refunds r
left join core.p2p_pix_payments p on p.provider_payment_id = r.provider_payment_id
where r.trade_id is not null and r.status <> 'DONE';
comment on view reporting.p2p_pix_refunds_due is
  'PIX payments received for P2P trades that no one may be credited with (paid after the trade ended, or a review ended refunded) and that the worker has not yet returned to the payer (PENDING, or FAILED for an operator). Healthy: empty or only a few minutes old.';

grant select on reporting.p2p_escrow_mismatches, reporting.p2p_trades, reporting.p2p_pix_refunds_due
  to exchange_auditor, exchange_admin;
