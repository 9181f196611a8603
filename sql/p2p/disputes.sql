-- p2p/disputes.sql: disputes: opened by a party, resolved (and listed) by an admin.
-- Overview of the P2P domain in p2p/core.sql.

create function api.open_p2p_dispute(user_id bigint, trade_id bigint, reason text)
returns table (status text, message text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_from timestamptz;
begin
  v_trade := core.p2p_lock_trade(open_p2p_dispute.trade_id, open_p2p_dispute.user_id);
  if core.p2p_cancel_if_late(v_trade) then
    return query select 'CANCELLED'::text, core.p2p_late_message();
    return;
  end if;
  if v_trade.status <> 'PAID' then
    raise exception '%', case when v_trade.status = 'OPEN'
      then 'Só é possível abrir disputa depois que o comprador marcar o pagamento.'
      else core.p2p_state_error(v_trade) end using errcode = 'BSS01';
  end if;
  v_from := v_trade.paid_at + make_interval(mins => core.setting('p2p_release_window_minutes')::int);
  if now() < v_from then
    raise exception 'Aguarde o prazo de liberação: você poderá abrir uma disputa a partir de %.', core.p2p_when(v_from)
      using errcode = 'BSS01';
  end if;
  if reason is null or length(btrim(reason)) < 10 or length(reason) > 2000 then
    raise exception 'Explique o problema (de 10 a 2000 caracteres).' using errcode = 'BSV01', column = 'reason';
  end if;
  update core.p2p_trades t
     set status = 'DISPUTED', disputed_at = now(), dispute_opened_by = open_p2p_dispute.user_id,
         dispute_reason = btrim(open_p2p_dispute.reason), updated_at = now()
   where t.id = v_trade.id;
  perform core.p2p_message(v_trade.id, 'Disputa aberta pelo ' ||
    case when open_p2p_dispute.user_id = v_trade.buyer_id then 'comprador' else 'vendedor' end ||
    ': ' || btrim(open_p2p_dispute.reason) || ' — a cripto segue bloqueada até a decisão de um administrador.');
  perform core.p2p_notify(v_trade, core.p2p_other(v_trade, open_p2p_dispute.user_id), 'p2p.disputed',
    'a outra parte abriu uma disputa. Envie suas evidências pelo chat da negociação.');
  return query select 'DISPUTED'::text, 'Disputa aberta. Um administrador vai analisar o chat e os comprovantes.'::text;
end
$$;
revoke all on function api.open_p2p_dispute(bigint, bigint, text) from public;
grant execute on function api.open_p2p_dispute(bigint, bigint, text) to exchange_app;
comment on function api.open_p2p_dispute(bigint, bigint, text) is
  'PAID → DISPUTED by either party, once the release window (setting p2p_release_window_minutes after paid) has passed, with a reason (BSV01). BSS01 wrong state or too early.';

create function admin.resolve_p2p_dispute(admin_id bigint, trade_id bigint, outcome text, note text,
                                          at_fault text default null, totp_code text default null)
returns table (status text, message text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_fault text := coalesce(at_fault, case when outcome = 'refund' then 'buyer' else 'seller' end);
  v_fault_user bigint;
  v_brl_from text;
  v_status text;
begin
  perform core.assert_admin(admin_id);
  if outcome is null or outcome not in ('release', 'refund') then
    raise exception 'Escolha: liberar ao comprador ou devolver ao vendedor.' using errcode = 'BSV01', column = 'outcome';
  end if;
  if v_fault not in ('buyer', 'seller', 'none') then
    raise exception 'Parte responsável inválida.' using errcode = 'BSV01', column = 'at_fault';
  end if;
  if note is null or length(btrim(note)) < 5 then
    raise exception 'Registre a decisão (ao menos 5 caracteres).' using errcode = 'BSV01', column = 'note';
  end if;
  v_trade := core.p2p_lock_trade(resolve_p2p_dispute.trade_id, null);
  if v_trade.status not in ('DISPUTED', 'REVIEW') then
    raise exception 'Esta negociação não está em disputa nem em análise (%).', v_trade.status using errcode = 'BSS01';
  end if;
  v_fault_user := case v_fault when 'buyer' then v_trade.buyer_id when 'seller' then v_trade.seller_id end;
  if outcome = 'release' then
    if v_trade.status = 'REVIEW' and exists (select from core.pix_charges c where c.reference = 'p2p-' || v_trade.id
                                             and core.pix_charge_clawed_back(c)) then
      raise exception 'O PIX desta negociação foi devolvido ao pagador pelo banco: só é possível devolver a cripto ao vendedor.'
        using errcode = 'BSS01', column = 'outcome';
    end if;
    -- the escrow (and a reviewed PIX's BRL) leaves on the admin's word: their fresh code through the web
    perform core.assert_admin_step_up(admin_id, resolve_p2p_dispute.totp_code, 'p2p_resolve');
    -- A PIX-confirmed payment held for review: its BRL now goes to the seller.
    if v_trade.status = 'REVIEW' and v_trade.pix_paid_amount is not null then
      v_brl_from := case when v_trade.pix_provider = 'inter' then 'clearing_inter' else 'clearing_mercadopago' end;
    end if;
    perform core.p2p_complete(v_trade.id, v_brl_from, v_trade.pix_paid_amount);
    v_status := 'COMPLETED';
  else
    perform core.release_hold(v_trade.hold_id, core.p2p_ref(v_trade.id));
    v_status := 'REFUNDED';
    if v_trade.status = 'REVIEW' and v_trade.pix_paid_payment_id is not null then
      -- the PIX that arrived goes back to whoever paid it
      perform core.record_pix_refund_due(coalesce(v_trade.pix_provider, 'mercadopago'), v_trade.pix_paid_payment_id,
        (select c.id from core.pix_charges c where c.reference = 'p2p-' || v_trade.id), v_trade.id,
        v_trade.pix_paid_amount, 'Pagamento PIX em análise devolvido (' || core.p2p_ref(v_trade.id) || ')');
    end if;
  end if;
  update core.p2p_trades t
     set status = v_status, resolution = case when resolve_p2p_dispute.outcome = 'release' then 'released' else 'refunded' end,
         resolution_note = btrim(resolve_p2p_dispute.note), resolved_by = resolve_p2p_dispute.admin_id,
         resolved_at = now(), fault_user_id = v_fault_user, updated_at = now()
   where t.id = v_trade.id;
  if v_status = 'REFUNDED' then  -- (a release was counted by core.p2p_complete)
    perform core.p2p_count_outcome(v_trade.buyer_id, v_trade.seller_id, 'refunded', v_fault_user);
  end if;
  perform core.audit(admin_id, 'p2p_resolve_dispute', coalesce(v_fault_user, v_trade.buyer_id), note,
    jsonb_build_object('trade_id', v_trade.id, 'outcome', outcome, 'at_fault', v_fault, 'from_status', v_trade.status,
                       'buyer_id', v_trade.buyer_id, 'seller_id', v_trade.seller_id,
                       'crypto', v_trade.crypto, 'crypto_amount', v_trade.crypto_amount));
  perform core.p2p_message(v_trade.id, case when outcome = 'release'
    then 'Decisão da administração: cripto liberada ao comprador. '
    else 'Decisão da administração: cripto devolvida ao vendedor. ' end || 'Nota: ' || btrim(note));
  perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.resolved',
    case when outcome = 'release' then 'a disputa foi decidida: a cripto foi liberada para você.'
         else 'a disputa foi decidida: a cripto voltou ao vendedor.' end);
  perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.resolved',
    case when outcome = 'release' then 'a disputa foi decidida: a cripto foi liberada ao comprador.'
         else 'a disputa foi decidida: a cripto voltou para você.' end);
  return query select v_status, 'Disputa resolvida.'::text;
end
$$;
revoke all on function admin.resolve_p2p_dispute(bigint, bigint, text, text, text, text) from public;
grant execute on function admin.resolve_p2p_dispute(bigint, bigint, text, text, text, text) to exchange_app, exchange_admin;
comment on function admin.resolve_p2p_dispute(bigint, bigint, text, text, text, text) is
  'DISPUTED or REVIEW → COMPLETED (outcome release: escrow to the buyer, fees; a PIX-confirmed payment under review credits the seller from the clearing account) or REFUNDED (outcome refund: escrow back to the seller), with a note; at_fault buyer|seller|none (default: buyer on refund, seller on release) is who the outcome counts against. Audit-logged, both parties notified. BSA01 not admin, BSS01 wrong state.';

create function admin.list_p2p_disputes(admin_id bigint, include_closed boolean default false)
returns table (trade_id bigint, reference text, status text, buyer_id bigint, buyer_name text, seller_id bigint,
               seller_name text, crypto text, crypto_amount numeric, brl_amount numeric, payment_method text,
               dispute_opened_by_name text, dispute_reason text, disputed_at timestamptz, pix_paid_amount numeric,
               resolution text, resolved_at timestamptz, proofs bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select t.id, core.p2p_ref(t.id), t.status, t.buyer_id, b.display_name, t.seller_id, s.display_name, t.crypto,
         t.crypto_amount, t.brl_amount, t.payment_method, d.display_name, t.dispute_reason,
         coalesce(t.disputed_at, t.pix_confirmed_at), t.pix_paid_amount, t.resolution, t.resolved_at,
         (select count(*) from core.p2p_proofs p where p.trade_id = t.id)
  from core.p2p_trades t
  cross join core.assert_admin(list_p2p_disputes.admin_id) a
  join core.users b on b.id = t.buyer_id
  join core.users s on s.id = t.seller_id
  left join core.users d on d.id = t.dispute_opened_by
  where t.status in ('DISPUTED', 'REVIEW')
     or (list_p2p_disputes.include_closed and t.resolution is not null)
  order by t.status not in ('DISPUTED', 'REVIEW'), coalesce(t.disputed_at, t.pix_confirmed_at, t.created_at), t.id
  limit 500
$$;
revoke all on function admin.list_p2p_disputes(bigint, boolean) from public;
grant execute on function admin.list_p2p_disputes(bigint, boolean) to exchange_app, exchange_admin;
comment on function admin.list_p2p_disputes(bigint, boolean) is
  'Open disputes and PIX payments under review, oldest first (with include_closed, resolved ones after them). BSA01 not admin.';
