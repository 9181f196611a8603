-- p2p/chat.sql: a trade's chat messages and payment proofs.
-- Overview of the P2P domain in p2p/core.sql.

create or replace function core.p2p_assert_viewer(user_id bigint, trade_id bigint) returns core.p2p_trades
language plpgsql stable as $$
declare
  v_trade core.p2p_trades;
begin
  select * into v_trade from core.p2p_trades t where t.id = p2p_assert_viewer.trade_id;
  if not found or (p2p_assert_viewer.user_id not in (v_trade.buyer_id, v_trade.seller_id)
                   and not exists (select from core.users u where u.id = p2p_assert_viewer.user_id
                                   and u.role = 'admin' and u.status = 'active')) then
    raise exception 'Negociação não encontrada.' using errcode = 'BSN01';
  end if;
  return v_trade;
end
$$;
comment on function core.p2p_assert_viewer(bigint, bigint) is 'The trade, when the user is one of its parties or an admin; BSN01 otherwise.';

create function api.list_p2p_messages(user_id bigint, trade_id bigint, after_id bigint default 0)
returns table (message_id bigint, author_id bigint, author_name text, author_role text, is_system boolean,
               is_mine boolean, body text, created_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades := core.p2p_assert_viewer(list_p2p_messages.user_id, list_p2p_messages.trade_id);
begin
  return query
  select m.id, m.user_id, coalesce(u.display_name, 'bs-market'),
         case when m.user_id is null then 'system' when m.user_id = v_trade.buyer_id then 'buyer'
              when m.user_id = v_trade.seller_id then 'seller' else 'admin' end,
         m.user_id is null, m.user_id = list_p2p_messages.user_id, m.body, m.created_at
  from core.p2p_messages m left join core.users u on u.id = m.user_id
  where m.trade_id = v_trade.id and m.id > coalesce(list_p2p_messages.after_id, 0)
  order by m.id
  limit 1000;
end
$$;
revoke all on function api.list_p2p_messages(bigint, bigint, bigint) from public;
grant execute on function api.list_p2p_messages(bigint, bigint, bigint) to exchange_app;
comment on function api.list_p2p_messages(bigint, bigint, bigint) is
  'A trade''s chat, oldest first (after_id for increments): the parties'' and admins'' messages and a system message per transition. BSN01 for anyone but the parties and admins.';

create function api.send_p2p_message(user_id bigint, trade_id bigint, body text)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_id bigint;
  v_name text;
begin
  perform core.assert_active_user(send_p2p_message.user_id);
  v_trade := core.p2p_assert_viewer(send_p2p_message.user_id, send_p2p_message.trade_id);
  if body is null or length(btrim(body)) = 0 or length(body) > 2000 then
    raise exception 'Escreva uma mensagem (até 2000 caracteres).' using errcode = 'BSV01', column = 'body';
  end if;
  insert into core.p2p_messages (trade_id, user_id, body)
  values (v_trade.id, send_p2p_message.user_id, btrim(send_p2p_message.body))
  returning id into v_id;
  select u.display_name into v_name from core.users u where u.id = send_p2p_message.user_id;
  if send_p2p_message.user_id in (v_trade.buyer_id, v_trade.seller_id) then
    perform core.p2p_notify(v_trade, core.p2p_other(v_trade, send_p2p_message.user_id), 'p2p.message',
                            'nova mensagem de ' || v_name || '.');
  else
    perform core.p2p_notify(v_trade, v_trade.buyer_id, 'p2p.message', 'nova mensagem da administração.');
    perform core.p2p_notify(v_trade, v_trade.seller_id, 'p2p.message', 'nova mensagem da administração.');
  end if;
  return v_id;
end
$$;
revoke all on function api.send_p2p_message(bigint, bigint, text) from public;
grant execute on function api.send_p2p_message(bigint, bigint, text) to exchange_app;
comment on function api.send_p2p_message(bigint, bigint, text) is
  'Posts a chat message on a trade (a party, or an admin mediating) and notifies the counterparty (both parties for an admin). BSV01 empty or too long, BSN01 not allowed.';

create function api.add_p2p_proof(user_id bigint, trade_id bigint, stored_name text, original_name text,
                                  content_type text, size_bytes int, sha256 text)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades;
  v_id bigint;
begin
  perform core.assert_active_user(add_p2p_proof.user_id);
  v_trade := core.p2p_lock_trade(add_p2p_proof.trade_id, add_p2p_proof.user_id);
  if v_trade.status not in ('OPEN', 'PAID', 'DISPUTED', 'REVIEW') then
    raise exception 'A negociação está encerrada: não aceita mais arquivos.' using errcode = 'BSS01';
  end if;
  insert into core.p2p_proofs (trade_id, user_id, purpose, stored_name, original_name, content_type, size_bytes, sha256)
  values (v_trade.id, add_p2p_proof.user_id,
          case when v_trade.status in ('DISPUTED', 'REVIEW') then 'evidence' else 'payment' end,
          add_p2p_proof.stored_name, left(coalesce(nullif(btrim(add_p2p_proof.original_name), ''), 'arquivo'), 200),
          add_p2p_proof.content_type, add_p2p_proof.size_bytes, add_p2p_proof.sha256)
  returning id into v_id;
  perform core.p2p_message(v_trade.id, case when add_p2p_proof.user_id = v_trade.buyer_id then 'O comprador' else 'O vendedor' end
    || ' enviou um arquivo: ' || left(coalesce(nullif(btrim(add_p2p_proof.original_name), ''), 'arquivo'), 200) || '.');
  perform core.p2p_notify(v_trade, core.p2p_other(v_trade, add_p2p_proof.user_id), 'p2p.proof',
                          'a outra parte enviou um arquivo.');
  return v_id;
end
$$;
revoke all on function api.add_p2p_proof(bigint, bigint, text, text, text, int, text) from public;
grant execute on function api.add_p2p_proof(bigint, bigint, text, text, text, int, text) to exchange_app;
comment on function api.add_p2p_proof(bigint, bigint, text, text, text, int, text) is
  'Records a payment proof or dispute evidence a party uploaded (the file is stored by the app under a random name; PNG, JPEG or PDF up to 5 MB, checked by content). BSN01 not a party, BSS01 trade closed.';

create function api.list_p2p_proofs(user_id bigint, trade_id bigint)
returns table (proof_id bigint, author_id bigint, author_name text, purpose text, original_name text,
               content_type text, size_bytes int, created_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_trade core.p2p_trades := core.p2p_assert_viewer(list_p2p_proofs.user_id, list_p2p_proofs.trade_id);
begin
  return query
  select p.id, p.user_id, u.display_name, p.purpose, p.original_name, p.content_type, p.size_bytes, p.created_at
  from core.p2p_proofs p join core.users u on u.id = p.user_id
  where p.trade_id = v_trade.id order by p.id;
end
$$;
revoke all on function api.list_p2p_proofs(bigint, bigint) from public;
grant execute on function api.list_p2p_proofs(bigint, bigint) to exchange_app;
comment on function api.list_p2p_proofs(bigint, bigint) is 'The proofs and evidence of a trade (parties and admins only; BSN01 otherwise).';

create function api.get_p2p_proof(user_id bigint, proof_id bigint)
returns table (id bigint, trade_id bigint, stored_name text, original_name text, content_type text, size_bytes int)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_proof core.p2p_proofs;
begin
  select * into v_proof from core.p2p_proofs p where p.id = get_p2p_proof.proof_id;
  if not found then
    raise exception 'Arquivo não encontrado.' using errcode = 'BSN01';
  end if;
  perform core.p2p_assert_viewer(get_p2p_proof.user_id, v_proof.trade_id);
  return query select v_proof.id, v_proof.trade_id, v_proof.stored_name, v_proof.original_name, v_proof.content_type,
                      v_proof.size_bytes;
end
$$;
revoke all on function api.get_p2p_proof(bigint, bigint) from public;
grant execute on function api.get_p2p_proof(bigint, bigint) to exchange_app;
comment on function api.get_p2p_proof(bigint, bigint) is 'Where a proof file is stored, for its download by a party of the trade or an admin; BSN01 for anyone else.';
