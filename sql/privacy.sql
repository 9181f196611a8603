-- privacy.sql: what LGPD (Lei 13.709/2018) gives a customer here.
--
-- * Access and portability (art. 18, II and V): api.export_my_data_sections
--   lists everything we hold about the customer, one section per kind of
--   record (the web streams it as JSON or as a .zip of CSVs);
--   api.export_my_data is the same as one jsonb document, for a DBA in psql.
--   Another customer appears only by display name (a trade's counterparty,
--   a rating, a block), never by e-mail, CPF or payment details.
-- * Closure (art. 18, VI, within the legal retention of art. 16, I):
--   api.close_account, allowed only when nothing is owed either way
--   (core.closure_blockers). A closed account cannot log in or operate; its
--   ledger stays.
-- * Anonymisation after the retention period (setting
--   personal_data_retention_years, 5 by Lei 9.613/98 art. 10):
--   admin.anonymise_due_accounts (worker) replaces or deletes personal data
--   and queues the stored files for deletion (core.file_deletions, deleted
--   by the worker outside the transaction). Entries, postings and amounts
--   are never touched.
-- * reporting.account_closures: closures and anonymisations, for auditors.

-- ---------------------------------------------------------------------------
-- Export
-- ---------------------------------------------------------------------------

create or replace function core.privacy_sections(user_id bigint)
returns table (section text, description text, rows json)
language plpgsql stable as $$
declare
  v_user bigint := privacy_sections.user_id;
begin
  if not exists (select from core.users u where u.id = v_user) then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  -- Each section: a JSON array of row objects, columns in this order.
  -- (The password hash and the 2FA secret are not exported: they are
  -- security data, not information about the person.)
  return query select 'profile', 'Cadastro: e-mail, nome de exibição, situação da conta',
    (select json_agg(t) from (
       select u.id as user_id, u.email, u.display_name, u.role, u.status, u.kyc_level, u.twofactor_on,
              u.created_at, u.last_login_at, u.frozen_reason, u.exits_blocked_at, u.exits_blocked_reason
       from core.users u where u.id = v_user) t);
  return query select 'kyc_profile', 'Dados de identificação (KYC): nome completo, CPF, data de nascimento, endereço',
    (select coalesce(json_agg(t), '[]') from (
       select k.full_name, k.cpf, k.birth_date, k.address, k.verified_at, k.updated_at
       from core.kyc_profiles k where k.user_id = v_user) t);
  return query select 'kyc_submissions', 'Envios de documentos para verificação e o resultado da análise',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select s.id, s.status, s.created_at, s.reviewed_at, s.review_reason
       from core.kyc_submissions s where s.user_id = v_user) t);
  return query select 'kyc_documents', 'Arquivos de documentos enviados (metadados; os arquivos estão em /kyc)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select d.id, d.submission_id, d.kind, d.content_type, d.size_bytes, d.sha256, d.created_at
       from core.kyc_documents d where d.user_id = v_user) t);
  return query select 'balances', 'Saldos atuais por moeda (disponível e bloqueado)',
    (select coalesce(json_agg(t order by t.sort_order), '[]') from (
       select a.currency, sum(a.balance) filter (where a.purpose = 'available') as available,
              sum(a.balance) filter (where a.purpose = 'locked') as locked, min(c.sort_order) as sort_order
       from core.accounts a join core.currencies c on c.code = a.currency
       where a.user_id = v_user group by a.currency) t);
  return query select 'ledger_postings', 'Extrato: cada lançamento nas suas contas, com o saldo depois dele',
    (select coalesce(json_agg(t order by t.entry_id, t.account), '[]') from (
       select p.entry_id, e.created_at, e.kind, e.description, e.reference, p.currency, a.purpose as account,
              p.amount, p.balance_after
       from core.accounts a
       join core.postings p on p.account_id = a.id
       join core.entries e on e.id = p.entry_id
       where a.user_id = v_user) t);
  return query select 'holds', 'Bloqueios de saldo (custódia P2P, saques e ordens em andamento)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select h.id, h.currency, h.amount, h.purpose, h.reference, h.status, h.captured, h.created_at, h.resolved_at
       from core.holds h where h.user_id = v_user) t);
  return query select 'pix_deposits', 'Cobranças PIX: depósitos e pagamentos de negociações P2P',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select c.id, c.purpose, c.reference, c.amount, c.provider, c.status, c.status_detail, c.payer_cpf,
              c.paid_amount, c.credited_amount, c.end_to_end_id, c.created_at, c.paid_at, c.resolved_at
       from core.pix_charges c where c.user_id = v_user) t);
  return query select 'pix_clawbacks', 'PIX devolvidos ao pagador (MED) e eventuais débitos',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select k.id, k.provider_status, k.amount, k.recovered, k.debt, k.debt_recovered, k.created_at
       from core.pix_clawbacks k where k.user_id = v_user) t);
  return query select 'pix_withdrawals', 'Saques por PIX',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select w.id, w.reference, w.amount, w.key_type, w.pix_key, w.status, w.failure_reason, w.created_at,
              w.resolved_at
       from core.withdrawals w where w.user_id = v_user) t);
  return query select 'pix_destinations', 'Chaves PIX salvas para saque',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select d.id, d.key_type, d.pix_key, d.label, d.usable_from, d.created_at, d.removed_at
       from core.withdrawal_destinations d where d.user_id = v_user) t);
  return query select 'market_orders', 'Ordens de compra e venda no balcão (mercado)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select o.id, o.side, o.symbol, o.status, o.price, o.brl_amount, o.crypto_amount, o.spread_charged,
              o.fee_charged, o.failure_reason, o.created_at, o.settled_at
       from core.market_orders o where o.user_id = v_user) t);
  return query select 'p2p_offers', 'Seus anúncios P2P',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select o.id, o.side, o.crypto, o.price_type, o.fixed_price, o.premium_percent, o.total_amount,
              o.remaining_amount, o.min_brl, o.max_brl, o.payment_methods, o.payment_window_minutes, o.terms,
              o.payment_details, o.status, o.created_at, o.closed_at
       from core.p2p_offers o where o.user_id = v_user) t);
  -- The counterparty by display name only; payment details and the payer's
  -- CPF only when they are the customer's own.
  return query select 'p2p_trades', 'Negociações P2P (a contraparte aparece só pelo nome de exibição)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select tr.id, case when tr.buyer_id = v_user then 'buyer' else 'seller' end as my_side,
              cp.display_name as counterparty, tr.crypto, tr.crypto_amount, tr.price, tr.brl_amount,
              case when tr.buyer_id = v_user then tr.buyer_fee else tr.seller_fee end as my_fee,
              tr.payment_method, case when tr.seller_id = v_user then tr.payment_details end as my_payment_details,
              case when tr.buyer_id = v_user then tr.pix_payer_cpf end as my_payer_cpf,
              tr.status, tr.created_at, tr.paid_at, tr.completed_at, tr.cancelled_at, tr.disputed_at,
              tr.resolution, tr.resolved_at
       from core.p2p_trades tr
       join core.users cp on cp.id = case when tr.buyer_id = v_user then tr.seller_id else tr.buyer_id end
       where tr.buyer_id = v_user or tr.seller_id = v_user) t);
  return query select 'p2p_messages', 'Mensagens que você escreveu nos chats P2P',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select m.id, m.trade_id, m.body, m.created_at from core.p2p_messages m where m.user_id = v_user) t);
  return query select 'p2p_proofs', 'Comprovantes e evidências que você enviou (metadados)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select f.id, f.trade_id, f.purpose, f.original_name, f.content_type, f.size_bytes, f.sha256, f.created_at
       from core.p2p_proofs f where f.user_id = v_user) t);
  return query select 'p2p_ratings', 'Avaliações que você deu e recebeu (a outra parte pelo nome de exibição)',
    (select coalesce(json_agg(t order by t.created_at, t.trade_id), '[]') from (
       select r.trade_id, case when r.rater_id = v_user then 'given' else 'received' end as direction,
              o.display_name as other_party, r.positive, r.comment, r.created_at
       from core.p2p_ratings r
       join core.users o on o.id = case when r.rater_id = v_user then r.rated_id else r.rater_id end
       where r.rater_id = v_user or r.rated_id = v_user) t);
  return query select 'p2p_blocks', 'Clientes que você bloqueou no P2P',
    (select coalesce(json_agg(t order by t.created_at), '[]') from (
       select o.display_name as blocked, b.created_at
       from core.p2p_blocks b join core.users o on o.id = b.blocked_user_id where b.user_id = v_user) t);
  return query select 'crypto_deposit_addresses', 'Seus endereços de depósito de cripto',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select a.id, a.coin, a.network, a.address, a.memo, a.requested_at, a.ready_at
       from core.crypto_deposit_addresses a where a.user_id = v_user) t);
  return query select 'crypto_deposits', 'Depósitos de cripto recebidos na blockchain',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select d.id, d.coin, d.network, d.tx_id, d.address, d.memo, d.amount, d.status, d.confirmations,
              d.first_seen_at, d.credited_at
       from core.crypto_deposits d where d.user_id = v_user) t);
  return query select 'crypto_withdrawals', 'Saques de cripto para a blockchain',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select w.id, w.reference, w.coin, w.network, w.address, w.memo, w.amount, w.fee, w.brl_value, w.status,
              w.tx_id, w.failure_reason, w.created_at, w.resolved_at
       from core.crypto_withdrawals w where w.user_id = v_user) t);
  return query select 'crypto_address_book', 'Endereços de cripto salvos para saque',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select b.id, b.coin, b.network, b.address, b.memo, b.label, b.usable_from, b.created_at, b.removed_at
       from core.crypto_address_book b where b.user_id = v_user) t);
  return query select 'logins', 'Tentativas de entrada na conta (data, resultado, IP)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select l.id, l.created_at, l.succeeded, l.ip from core.login_events l where l.user_id = v_user) t);
  return query select 'sessions', 'Sessões (dispositivos): navegador, IP, início, último uso, fim',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select s.id, s.browser, s.user_agent, s.ip, s.created_at, s.last_seen_at, s.ended_at, s.end_reason
       from core.user_sessions s where s.user_id = v_user) t);
  return query select 'emails', 'E-mails enviados a você (tipo, endereço, situação; os links não são guardados)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select m.id, m.kind, m.recipient, m.status, m.created_at, m.sent_at
       from core.mail_outbox m where m.user_id = v_user) t);
  return query select 'twofactor_recovery_requests', 'Pedidos de recuperação do 2FA',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select r.id, r.reason, r.ip, r.status, r.created_at, r.reviewed_at, r.review_reason
       from core.twofactor_recovery_requests r where r.user_id = v_user) t);
  return query select 'security_events', 'Eventos de segurança (2FA, senha, KYC, destinos de saque)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select s.id, s.created_at, s.kind, s.detail, s.ip from core.security_events s where s.user_id = v_user) t);
  return query select 'notifications', 'Notificações enviadas a você',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select n.id, n.created_at, n.kind, n.message, n.link, n.read_at, n.emailed_at
       from core.notifications n where n.user_id = v_user) t);
  return query select 'privacy_requests', 'Seus pedidos de acesso aos dados e de encerramento (LGPD)',
    (select coalesce(json_agg(t order by t.id), '[]') from (
       select r.id, r.kind, r.ip, r.created_at from core.privacy_requests r where r.user_id = v_user) t);
  return query select 'account_closure', 'Encerramento da conta',
    (select coalesce(json_agg(t), '[]') from (
       select c.closed_at, c.reason, c.anonymised_at from core.account_closures c where c.user_id = v_user) t);
end
$$;
comment on function core.privacy_sections(bigint) is
  'Everything held about one customer, one row per section (profile, KYC, balances, ledger postings, holds, PIX deposits and withdrawals, market orders, P2P offers/trades/messages/proofs/ratings/blocks, crypto deposits and withdrawals, logins, sessions, e-mails sent, 2FA recovery requests, security events, notifications, privacy requests): rows is a JSON array of objects. Other customers appear only by display name. BSN01 unknown customer. Long: a flat inventory, one query per section of what is held about a customer, kept together so that the section of a new table is added and reviewed next to all the others.';

create or replace function api.export_my_data_sections(user_id bigint, format text default 'csv', ip text default null)
returns table (section text, description text, rows text)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  if format not in ('json', 'csv') then
    raise exception 'Formato inválido: escolha JSON ou CSV.' using errcode = 'BSV01', column = 'format';
  end if;
  if not exists (select from core.users u where u.id = export_my_data_sections.user_id and u.status <> 'closed') then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  insert into core.privacy_requests (user_id, kind, ip)
  values (export_my_data_sections.user_id, 'export_' || format, ip);
  -- JSON text, so that every amount keeps its exact digits on the way out.
  return query select s.section, s.description, s.rows::text
  from core.privacy_sections(export_my_data_sections.user_id) s;
end
$$;
revoke all on function api.export_my_data_sections(bigint, text, text) from public;
grant execute on function api.export_my_data_sections(bigint, text, text) to exchange_app;
comment on function api.export_my_data_sections(bigint, text, text) is
  'The customer''s download of their data (LGPD art. 18, II and V): every section of core.privacy_sections as JSON text (exact numbers), the request logged in core.privacy_requests (format json or csv). BSV01 unknown format, BSN01 unknown or closed customer.';

create or replace function api.export_my_data(user_id bigint)
returns jsonb
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select jsonb_build_object(
    'format', 'bs-market LGPD export v1',
    'generated_at', now(),
    'user_id', export_my_data.user_id,
    'sections', jsonb_object_agg(s.section, jsonb_build_object('description', s.description, 'rows', s.rows::jsonb)))
  from core.privacy_sections(export_my_data.user_id) s
$$;
revoke all on function api.export_my_data(bigint) from public;
grant execute on function api.export_my_data(bigint) to exchange_app, exchange_admin;
comment on function api.export_my_data(bigint) is
  'Everything held about a customer as one jsonb document ({format, generated_at, user_id, sections: {name: {description, rows}}}), for a DBA answering a request in psql; the web streams api.export_my_data_sections. BSN01 unknown customer.';

-- ---------------------------------------------------------------------------
-- Closure
-- ---------------------------------------------------------------------------

create or replace function core.closure_blockers(user_id bigint)
returns table (code text, currency text, amount numeric, items int, message text)
language sql stable as $$
  -- Every reason the account cannot be closed now; none means it can.
  select 'balance', b.currency, b.total, null::int,
         format('saldo de %s %s (disponível ou bloqueado): saque, venda ou envie antes de encerrar',
                trim_scale(b.total), b.currency)
  from (select a.currency, sum(a.balance) as total, min(c.sort_order) as sort_order
        from core.accounts a join core.currencies c on c.code = a.currency
        where a.user_id = closure_blockers.user_id group by a.currency
        having sum(a.balance) <> 0 or bool_or(a.balance <> 0)) b
  union all
  select 'p2p_offers', null, null, count(*)::int, format('%s anúncio(s) P2P ativo(s) ou pausado(s): cancele-os', count(*))
  from core.p2p_offers o where o.user_id = closure_blockers.user_id and o.status in ('active', 'paused')
  having count(*) > 0
  union all
  select 'p2p_trades', null, null, count(*)::int, format('%s negociação(ões) P2P em andamento ou em disputa', count(*))
  from core.p2p_trades t
  where (t.buyer_id = closure_blockers.user_id or t.seller_id = closure_blockers.user_id)
    and t.status in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW')
  having count(*) > 0
  union all
  select 'pix_deposits', null, null, count(*)::int, format('%s depósito(s) PIX pendente(s) ou em análise', count(*))
  from core.pix_charges c where c.user_id = closure_blockers.user_id and c.status in ('PENDING', 'REVIEW')
  having count(*) > 0
  union all
  select 'pix_withdrawals', null, null, count(*)::int, format('%s saque(s) PIX em andamento', count(*))
  from core.withdrawals w
  where w.user_id = closure_blockers.user_id and w.status in ('AWAITING_APPROVAL', 'PENDING', 'PROCESSING')
  having count(*) > 0
  union all
  select 'crypto_deposits', null, null, count(*)::int, format('%s depósito(s) de cripto aguardando confirmações', count(*))
  from core.crypto_deposits d where d.user_id = closure_blockers.user_id and d.status = 'PENDING'
  having count(*) > 0
  union all
  select 'crypto_withdrawals', null, null, count(*)::int, format('%s saque(s) de cripto em andamento', count(*))
  from core.crypto_withdrawals w
  where w.user_id = closure_blockers.user_id and w.status in ('AWAITING_APPROVAL', 'PENDING', 'PROCESSING')
  having count(*) > 0
  union all
  select 'market_orders', null, null, count(*)::int, format('%s ordem(ns) de mercado em execução', count(*))
  from core.market_orders o where o.user_id = closure_blockers.user_id and o.status = 'EXECUTING'
  having count(*) > 0
  union all
  select 'clawback_debt', 'BRL', sum(k.debt - k.debt_recovered), null,
         format('débito de R$ %s de PIX devolvido ao pagador (MED) a quitar',
                to_char(sum(k.debt - k.debt_recovered), 'FM999G999G990D00'))
  from core.pix_clawbacks k where k.user_id = closure_blockers.user_id
  having sum(k.debt - k.debt_recovered) > 0
$$;
comment on function core.closure_blockers(bigint) is
  'Why an account cannot be closed now, one row each: a balance in some currency (available or locked), open P2P offers, P2P trades not finished, pending PIX deposits, PIX withdrawals, crypto deposits or withdrawals in progress, market orders executing, a clawback debt. Empty: it can be closed.';

create or replace function api.closure_check(user_id bigint)
returns table (code text, currency text, amount numeric, items int, message text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select b.* from core.closure_blockers(closure_check.user_id) b
$$;
revoke all on function api.closure_check(bigint) from public;
grant execute on function api.closure_check(bigint) to exchange_app;
comment on function api.closure_check(bigint) is
  'What still stops the customer from closing their account (core.closure_blockers), for the closure page. Empty: it can be closed.';

create or replace function api.close_account(user_id bigint, totp_code text default null, reason text default '',
                                             ip text default null)
returns timestamptz
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_missing text;
begin
  -- The app has checked the password typed again. The customer row first,
  -- then every account (the order exits use), so nothing moves while we look.
  select * into v_user from core.users u where u.id = close_account.user_id for update;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  elsif v_user.status = 'closed' then
    raise exception 'Esta conta já está encerrada.' using errcode = 'BSA03';
  elsif v_user.role <> 'customer' then
    raise exception 'Contas de operadores são encerradas pelo suporte.' using errcode = 'BSA01';
  elsif v_user.status = 'frozen' then
    raise exception 'Conta bloqueada: fale com o suporte para encerrá-la.' using errcode = 'BSA02';
  end if;
  if length(coalesce(reason, '')) > 500 then
    raise exception 'Motivo longo demais (máximo de 500 caracteres).' using errcode = 'BSV01', column = 'reason';
  end if;
  if v_user.twofactor_on then
    perform core.assert_step_up(close_account.user_id, totp_code, 'close_account');
  end if;
  perform from core.accounts a where a.user_id = close_account.user_id order by a.id for no key update;
  select string_agg(b.message, '; ') into v_missing from core.closure_blockers(close_account.user_id) b;
  if v_missing is not null then
    raise exception 'Ainda não é possível encerrar a conta: %.', v_missing using errcode = 'BSC01';
  end if;
  update core.users u set status = 'closed' where u.id = close_account.user_id;
  -- (closed again after an operator reopened it: the retention counts from now)
  insert into core.account_closures as c (user_id, ip, reason)
  values (close_account.user_id, close_account.ip, btrim(coalesce(close_account.reason, '')))
  on conflict on constraint account_closures_pkey do update
    set closed_at = now(), ip = excluded.ip, reason = excluded.reason, anonymise_blocked = null,
        anonymise_checked_at = null;
  insert into core.privacy_requests (user_id, kind, ip) values (close_account.user_id, 'closure', close_account.ip);
  return now();
end
$$;
revoke all on function api.close_account(bigint, text, text, text) from public;
grant execute on function api.close_account(bigint, text, text, text) to exchange_app;
comment on function api.close_account(bigint, text, text, text) is
  'Closes the customer''s own account (the app has checked the password; with 2FA on a fresh code, core.assert_step_up): only with every balance at zero and nothing in progress (core.closure_blockers, BSC01 listing what is missing). Status becomes closed: no login, no operation; the ledger is kept; personal data are anonymised after personal_data_retention_years (admin.anonymise_due_accounts). BSA03 already closed, BSA02 frozen, BSA01 not a customer, BSV01 wrong 2FA code.';

-- ---------------------------------------------------------------------------
-- Anonymisation after the retention period
-- ---------------------------------------------------------------------------

create or replace function core.anonymise_user(user_id bigint) returns int
language plpgsql volatile as $$
declare
  v_id bigint := anonymise_user.user_id;
  v_old_email text;
  v_email text := 'encerrada-' || anonymise_user.user_id || '@anonimizada.invalid';
  v_files int;
begin
  select u.email into v_old_email from core.users u where u.id = v_id;
  -- The e-mail cannot receive mail (.invalid, RFC 2606) and the password
  -- hash matches no password; the status stays closed.
  update core.users u
     set email = v_email, display_name = 'Conta encerrada', password_hash = '!anonimizada',
         frozen_reason = null, exits_blocked_reason = null
   where u.id = v_id;
  -- KYC: identity data deleted, documents queued for deletion from storage.
  insert into core.file_deletions (user_id, store, path)
  select v_id, 'kyc', d.storage_path from core.kyc_documents d where d.user_id = v_id
  on conflict do nothing;
  get diagnostics v_files = row_count;
  delete from core.kyc_documents d where d.user_id = v_id;
  delete from core.kyc_profiles k where k.user_id = v_id;
  update core.kyc_submissions s set review_reason = case when s.review_reason is not null then 'anonimizado' end
   where s.user_id = v_id;
  -- P2P: the customer's files, chat texts, offer terms and payment details.
  insert into core.file_deletions (user_id, store, path)
  select v_id, 'p2p', f.stored_name from core.p2p_proofs f where f.user_id = v_id
  on conflict do nothing;
  v_files := v_files + (select count(*) from core.p2p_proofs f where f.user_id = v_id)::int;
  update core.p2p_proofs f set original_name = 'anonimizado' where f.user_id = v_id;
  update core.p2p_messages m set body = '[mensagem removida]' where m.user_id = v_id;
  update core.p2p_offers o set terms = '', payment_details = null where o.user_id = v_id;
  update core.p2p_trades t set payment_details = null where t.seller_id = v_id and t.payment_details is not null;
  update core.p2p_trades t set pix_payer_cpf = null where t.buyer_id = v_id and t.pix_payer_cpf is not null;
  update core.p2p_pix_payments p set payer_cpf = null
   where p.payer_cpf is not null and p.trade_id in (select t.id from core.p2p_trades t where t.buyer_id = v_id);
  update core.p2p_ratings r set comment = '' where r.rater_id = v_id and r.comment <> '';
  delete from core.p2p_blocks b where b.user_id = v_id;
  -- PIX and crypto destinations and payer data.
  update core.pix_charges c set payer_cpf = null where c.user_id = v_id and c.payer_cpf is not null;
  update core.withdrawals w set pix_key = 'anonimizado' where w.user_id = v_id;
  update core.withdrawal_destinations d
     set pix_key = 'anonimizado', label = '', removed_at = coalesce(d.removed_at, now())
   where d.user_id = v_id;
  update core.crypto_address_book b
     set address = 'anonimizado', memo = '', label = '', removed_at = coalesce(b.removed_at, now())
   where b.user_id = v_id;
  update core.crypto_withdrawals w set address = 'anonimizado', memo = '' where w.user_id = v_id;
  update core.crypto_deposits d set address = '', memo = '' where d.user_id = v_id;
  -- Logins, security log, notifications, 2FA.
  update core.login_events l set ip = null, email = v_email
   where l.user_id = v_id or (l.user_id is null and l.email = v_old_email);
  update core.security_events s set ip = null, detail = null where s.user_id = v_id;
  delete from core.notifications n where n.user_id = v_id;
  update core.user_sessions s set ip = null, user_agent = '', browser = '' where s.user_id = v_id;
  -- a mail not sent yet will not be: its address is gone
  update core.mail_outbox m set recipient = v_email, params = '{}',
         status = case when m.status = 'pending' then 'cancelled' else m.status end
   where m.user_id = v_id;
  update core.twofactor_recovery_requests r set reason = 'anonimizado', ip = null where r.user_id = v_id;
  delete from core.recovery_codes r where r.user_id = v_id;
  delete from core.user_totp t where t.user_id = v_id;
  update core.privacy_requests r set ip = null where r.user_id = v_id;
  update core.account_closures c set anonymised_at = now(), ip = null, reason = '', anonymise_blocked = null,
                                     anonymise_checked_at = now()
   where c.user_id = v_id;
  return v_files;
end
$$;
comment on function core.anonymise_user(bigint) is
  'Replaces or deletes the personal data of a closed account: e-mail (a .invalid placeholder), display name, password hash, KYC identity data and documents (files queued in core.file_deletions), P2P chat texts, proofs'' names, offer terms and payment details, PIX keys, crypto addresses, login and security-log IPs, sessions'' devices, mails'' addresses and parameters, 2FA recovery texts, notifications, 2FA. Entries, postings, amounts and the admin audit log are kept. Returns how many files were queued for deletion.';

create or replace function admin.anonymise_due_accounts(max_rows int default 20)
returns table (user_id bigint, outcome text, files_queued int)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_years int := core.setting('personal_data_retention_years')::int;
  v core.account_closures;
  v_blocked text;
begin
  for v in
    select c.* from core.account_closures c
    where c.anonymised_at is null and c.closed_at + make_interval(years => v_years) <= now()
    order by c.closed_at, c.user_id limit least(greatest(max_rows, 1), 500)
    for update skip locked
  loop
    if (select u.status from core.users u where u.id = v.user_id for update) <> 'closed' then
      -- reopened by an operator since: nothing to anonymise
      update core.account_closures c set anonymise_blocked = 'conta reaberta', anonymise_checked_at = now()
       where c.user_id = v.user_id;
      user_id := v.user_id; outcome := 'reopened'; files_queued := 0;
      return next;
      continue;
    end if;
    -- Money that arrived after the closure (an on-chain deposit, a PIX
    -- clawback debt) belongs to a person we must still be able to find.
    select string_agg(b.message, '; ') into v_blocked
    from core.closure_blockers(v.user_id) b where b.code in ('balance', 'clawback_debt', 'crypto_deposits');
    if v_blocked is not null then
      update core.account_closures c set anonymise_blocked = v_blocked, anonymise_checked_at = now()
       where c.user_id = v.user_id;
      user_id := v.user_id; outcome := 'blocked'; files_queued := 0;
      return next;
      continue;
    end if;
    files_queued := core.anonymise_user(v.user_id);
    user_id := v.user_id; outcome := 'anonymised';
    return next;
  end loop;
end
$$;
revoke all on function admin.anonymise_due_accounts(int) from public;
grant execute on function admin.anonymise_due_accounts(int) to exchange_worker, exchange_admin;
comment on function admin.anonymise_due_accounts(int) is
  'Worker: anonymises (core.anonymise_user) up to max_rows closed accounts whose closure is older than personal_data_retention_years; an account that holds a balance or a debt again is left as is, with the reason in account_closures.anonymise_blocked (outcome blocked); one an operator reopened is left too (outcome reopened). Returns each account handled and the files queued for deletion.';

create or replace function admin.file_deletions_due(max_rows int default 50)
returns table (deletion_id bigint, store text, path text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select f.id, f.store, f.path from core.file_deletions f
  where f.deleted_at is null order by f.id limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function admin.file_deletions_due(int) from public;
grant execute on function admin.file_deletions_due(int) to exchange_worker, exchange_admin;
comment on function admin.file_deletions_due(int) is
  'Worker: stored files still to delete (store kyc: UPLOAD_DIR/<path>; p2p: UPLOAD_DIR/p2p/<path>). Deleting is idempotent; report each with admin.record_file_deletion.';

create or replace function admin.record_file_deletion(deletion_id bigint, error text default null)
returns boolean
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  update core.file_deletions f
     set deleted_at = case when record_file_deletion.error is null then now() end,
         attempts = f.attempts + 1, last_error = left(record_file_deletion.error, 500)
   where f.id = record_file_deletion.deletion_id and f.deleted_at is null
  returning record_file_deletion.error is null
$$;
revoke all on function admin.record_file_deletion(bigint, text) from public;
grant execute on function admin.record_file_deletion(bigint, text) to exchange_worker, exchange_admin;
comment on function admin.record_file_deletion(bigint, text) is
  'Worker: the file of a deletion is gone (error NULL: deleted_at set) or could not be deleted (error kept, retried). Returns NULL when it was already recorded.';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

-- (settings joined directly: the auditor may not call core.* functions)
create or replace view reporting.account_closures as
select c.user_id, c.closed_at,
       c.closed_at + make_interval(years => (select s.value::int from core.settings s
                                        where s.name = 'personal_data_retention_years')) as retention_until,
       c.anonymised_at,
       case when c.anonymised_at is not null then 'anonymised'
            when c.anonymise_blocked is not null then 'blocked'
            else 'retained' end as state,
       c.anonymise_blocked,
       (select count(*) from core.file_deletions f where f.user_id = c.user_id and f.deleted_at is null) as files_pending,
       (select count(*) from core.file_deletions f where f.user_id = c.user_id and f.deleted_at is not null) as files_deleted,
       coalesce((select bool_or(a.balance <> 0) from core.accounts a where a.user_id = c.user_id), false) as holds_balance,
       (select count(*) from core.entries e where e.user_id = c.user_id) as ledger_entries
from core.account_closures c;
comment on view reporting.account_closures is
  'Closed accounts: when closed, until when personal data are retained (personal_data_retention_years), when anonymised (or why not yet: blocked), stored files pending and deleted, whether the account holds a balance again, and the ledger entries kept.';

grant select on reporting.account_closures to exchange_auditor, exchange_admin;
