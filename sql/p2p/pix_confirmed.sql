-- p2p/pix_confirmed.sql: PIX-confirmed trades, the BRL rails' entry points.
-- Overview of the P2P domain in p2p/core.sql.

-- ---------------------------------------------------------------------------
-- PIX-confirmed trades: the BRL rails' entry points
-- ---------------------------------------------------------------------------

create function admin.pending_p2p_pix_charges(max_rows int default 100)
returns table (trade_id bigint, external_reference text, brl_amount numeric, buyer_id bigint, buyer_email text,
               buyer_name text, buyer_cpf text, description text, expires_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select t.id, 'p2p-' || t.id, t.brl_amount, t.buyer_id, u.email, u.display_name, core.user_cpf(t.buyer_id),
         'bs-market ' || core.p2p_ref(t.id) || ': ' || core.p2p_amount(t.crypto_amount) || ' ' || t.crypto,
         t.payment_deadline
  from core.p2p_trades t join core.users u on u.id = t.buyer_id
  where t.status = 'OPEN' and t.payment_method = 'PIX_CONFIRMED' and t.pix_provider_payment_id is null
    and t.payment_deadline > now()
  order by t.id
  limit least(greatest(max_rows, 1), 1000)
$$;
revoke all on function admin.pending_p2p_pix_charges(int) from public;
grant execute on function admin.pending_p2p_pix_charges(int) to exchange_worker, exchange_admin;
comment on function admin.pending_p2p_pix_charges(int) is
  'For the BRL rails: OPEN PIX-confirmed trades that still need a PIX charge — exact amount, external_reference p2p-<trade_id>, the buyer (payer) and the payment deadline to use as the charge expiry.';

create function admin.attach_p2p_pix_charge(trade_id bigint, provider text, provider_payment_id text,
                                            qr_code text, qr_code_base64 text, expires_at timestamptz)
returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
begin
  if provider is null or provider not in ('mercadopago', 'inter') then
    raise exception 'Provedor PIX desconhecido: %.', provider using errcode = 'BSV01', column = 'provider';
  end if;
  if provider_payment_id is null or length(btrim(provider_payment_id)) = 0 or qr_code is null then
    raise exception 'Cobrança PIX sem identificador ou sem copia-e-cola.' using errcode = 'BSV01';
  end if;
  v_trade := core.p2p_lock_trade(attach_p2p_pix_charge.trade_id, null);
  if v_trade.payment_method <> 'PIX_CONFIRMED' then
    raise exception 'A negociação % não é PIX confirmado.', v_trade.id using errcode = 'BSS01';
  end if;
  if v_trade.pix_provider_payment_id is not null then
    if v_trade.pix_provider = attach_p2p_pix_charge.provider
       and v_trade.pix_provider_payment_id = attach_p2p_pix_charge.provider_payment_id then
      return false;  -- the same charge reported again
    end if;
    raise exception 'A negociação % já tem outra cobrança PIX (%).', v_trade.id, v_trade.pix_provider_payment_id
      using errcode = 'BSS01';
  end if;
  update core.p2p_trades t
     set pix_provider = attach_p2p_pix_charge.provider, pix_provider_payment_id = btrim(attach_p2p_pix_charge.provider_payment_id),
         pix_qr_code = attach_p2p_pix_charge.qr_code, pix_qr_code_base64 = attach_p2p_pix_charge.qr_code_base64,
         pix_expires_at = attach_p2p_pix_charge.expires_at, updated_at = now()
   where t.id = v_trade.id;
  if v_trade.status = 'OPEN' then
    perform core.p2p_message(v_trade.id, 'Cobrança PIX gerada para ' || core.format_brl(v_trade.brl_amount) ||
      '. Pague com uma conta no seu CPF: a cripto é liberada automaticamente quando o pagamento chegar.');
  end if;
  return true;
end
$$;
revoke all on function admin.attach_p2p_pix_charge(bigint, text, text, text, text, timestamptz) from public;
grant execute on function admin.attach_p2p_pix_charge(bigint, text, text, text, text, timestamptz) to exchange_app, exchange_worker, exchange_admin;
comment on function admin.attach_p2p_pix_charge(bigint, text, text, text, text, timestamptz) is
  'For the BRL rails: records the PIX charge created for a PIX-confirmed trade (provider mercadopago|inter, its payment id, copia-e-cola, QR image base64, expiry) so the trade page shows it. Returns true when recorded, false when the same charge was already recorded (idempotent); BSS01 another charge already attached or not a PIX-confirmed trade; BSN01 unknown trade.';

create function admin.confirm_p2p_pix_payment(trade_id bigint, paid_amount numeric, payer_cpf text,
                                              provider_payment_id text)
returns table (outcome text, status text, replayed boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_prior core.p2p_pix_payments;
  v_cpf text := core.cpf_digits(payer_cpf);
  v_buyer_cpf text;
  v_clearing text;
  v_outcome text;
  v_entry bigint;
begin
  if provider_payment_id is null or length(btrim(provider_payment_id)) = 0 then
    raise exception 'Pagamento sem identificador do provedor.' using errcode = 'BSV01', column = 'provider_payment_id';
  end if;
  perform core.check_amount('BRL', paid_amount, 'paid_amount');
  v_trade := core.p2p_lock_trade(confirm_p2p_pix_payment.trade_id, null);
  -- Webhook and reconciler may both report a payment: the first one counts.
  select * into v_prior from core.p2p_pix_payments p where p.provider_payment_id = btrim(confirm_p2p_pix_payment.provider_payment_id);
  if found then
    if v_prior.trade_id <> v_trade.id then
      raise exception 'O pagamento % já foi registrado para outra negociação.', provider_payment_id using errcode = 'BSI01';
    end if;
    return query select v_prior.outcome, v_trade.status, true;
    return;
  end if;
  if v_trade.payment_method <> 'PIX_CONFIRMED' then
    raise exception 'A negociação % não é PIX confirmado.', v_trade.id using errcode = 'BSS01';
  end if;
  v_clearing := case when v_trade.pix_provider = 'inter' then 'clearing_inter' else 'clearing_mercadopago' end;
  v_buyer_cpf := core.user_cpf(v_trade.buyer_id);

  if v_trade.status = 'OPEN' then
    -- A payment that arrives is honoured even a moment past the deadline:
    -- the charge was still payable.
    update core.p2p_trades t
       set pix_paid_amount = confirm_p2p_pix_payment.paid_amount, pix_payer_cpf = v_cpf,
           pix_paid_payment_id = btrim(confirm_p2p_pix_payment.provider_payment_id), pix_confirmed_at = now(),
           paid_at = now(), updated_at = now()
     where t.id = v_trade.id;
    -- (the buyer's CPF must be verified, level 2: a CPF only declared could be
    -- the victim's, set to make a triangulated PIX release the crypto)
    if v_buyer_cpf is not null and v_cpf = v_buyer_cpf and paid_amount = v_trade.brl_amount
       and (select u.kyc_level >= 2 from core.users u where u.id = v_trade.buyer_id)
       and (select u.exits_blocked_at is null and u.status = 'active' from core.users u where u.id = v_trade.seller_id) then
      perform core.p2p_complete(v_trade.id, v_clearing, confirm_p2p_pix_payment.paid_amount);
      select t.brl_entry_id into v_entry from core.p2p_trades t where t.id = v_trade.id;
      v_outcome := 'completed';
      perform core.p2p_message(v_trade.id, 'Pagamento PIX de ' || core.format_brl(paid_amount) ||
        ' confirmado do CPF do comprador: reais creditados ao vendedor e cripto liberada ao comprador. Negociação concluída.');
      perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.released',
        'PIX confirmado: ' || core.p2p_amount(v_trade.crypto_amount - v_trade.buyer_fee) || ' ' || v_trade.crypto || ' liberados para você.');
      perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.released',
        'PIX confirmado: ' || core.format_brl(paid_amount) || ' creditados no seu saldo e cripto entregue ao comprador.');
    else
      -- Wrong payer (triangulation fraud), wrong amount, or a seller whose
      -- exits are blocked: nothing is released.
      update core.p2p_trades t set status = 'REVIEW', updated_at = now() where t.id = v_trade.id;
      v_outcome := 'review';
      perform core.p2p_message(v_trade.id, 'Pagamento PIX recebido, mas ' ||
        case when paid_amount <> v_trade.brl_amount then 'o valor (' || core.format_brl(paid_amount) || ') não confere'
             else 'o CPF do pagador não é o do comprador' end ||
        '. Nada foi liberado: a negociação está em análise pela equipe.');
      perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.review',
        'o pagamento PIX não confere com seus dados; a negociação está em análise.');
      perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.review',
        'um pagamento PIX chegou mas não confere com o comprador; a negociação está em análise e sua cripto segue bloqueada.');
    end if;
  else
    -- Too late (the trade ended) or paid twice: never credited as free BRL
    -- (it could be spent at once and then clawed back). It goes back to the
    -- payer: the rails refund it at the provider (core.pix_refunds).
    v_outcome := 'refund';
    perform core.record_pix_refund_due(coalesce(v_trade.pix_provider, 'mercadopago'),
      confirm_p2p_pix_payment.provider_payment_id,
      (select c.id from core.pix_charges c where c.reference = 'p2p-' || v_trade.id), v_trade.id, paid_amount,
      'PIX recebido depois do fim da negociação ' || core.p2p_ref(v_trade.id));
    perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.pix_refund',
      'recebemos um PIX de ' || core.format_brl(paid_amount) || ' depois do fim da negociação; ele será devolvido à conta de origem.');
  end if;
  insert into core.p2p_pix_payments (provider_payment_id, trade_id, amount, payer_cpf, outcome, entry_id)
  values (btrim(confirm_p2p_pix_payment.provider_payment_id), v_trade.id, paid_amount, v_cpf, v_outcome, v_entry);
  return query select v_outcome, t.status, false from core.p2p_trades t where t.id = v_trade.id;
end
$$;
revoke all on function admin.confirm_p2p_pix_payment(bigint, numeric, text, text) from public;
grant execute on function admin.confirm_p2p_pix_payment(bigint, numeric, text, text) to exchange_worker, exchange_admin;
comment on function admin.confirm_p2p_pix_payment(bigint, numeric, text, text) is
  'For the BRL rails, after they verified a payment whose external_reference is p2p-<trade_id>. OPEN trade, amount = brl_amount, payer CPF = the buyer''s KYC CPF and a seller free to exit → COMPLETED: the seller''s BRL credited from the provider''s clearing account (reversible exposure until it matures) and the crypto released (outcome completed). Otherwise → REVIEW, nothing released (outcome review; an admin resolves it like a dispute). Trade no longer OPEN: nothing is booked, a refund to the payer is recorded in core.pix_refunds (outcome refund) for the worker to make at the provider. Idempotent per provider_payment_id (replayed true).';
