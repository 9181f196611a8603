-- demo.sql: the demo data of DESIGN.md §6, for `make run` and
-- `flask --app wsgi seed-demo`. Not granted to anyone: the owner runs it.
--
-- Only on a development database (setting environment = development, which
-- `make run` sets on its private cluster): the demo logins have a published
-- password and would be an open door anywhere else. It never touches an
-- account it did not create (users.created_by_seed): someone who registered
-- admin@example.com first keeps a plain customer account, unfunded.
--
-- alice and bob have verified KYC data (CPFs that pass the check digits)
-- and are funded through real ledger entries (journaled adjustments
-- by the demo admin), never by writing balances. Safe to run again: users
-- are found by e-mail and every adjustment has a fixed idempotency key.

create or replace function core.assert_demo_database() returns void
language plpgsql stable as $$
begin
  if core.setting('environment') is distinct from 'development' then
    raise exception 'seed-demo só roda num banco de desenvolvimento (core.settings environment = development; hoje: %).',
      coalesce(core.setting('environment'), 'não definido') using errcode = 'BSA01';
  end if;
end
$$;
comment on function core.assert_demo_database() is
  'BSA01 unless the setting environment is development: the demo logins have a published password.';

create or replace function core.seed_demo_user(
  email text, name text, role text, kyc_level int, cpf text, birth_date date, address text, password_hash text)
returns bigint
language plpgsql volatile as $$
declare
  v_user bigint;
begin
  select u.id into v_user from core.users u where u.email = seed_demo_user.email;
  if not found then
    v_user := api.register_user(seed_demo_user.email, password_hash, seed_demo_user.name);
    update core.users u set created_by_seed = true where u.id = v_user;
    perform core.mark_email_verified(v_user);  -- demo accounts are ready to use
  elsif not (select u.created_by_seed from core.users u where u.id = v_user) then
    raise warning 'seed-demo: % already exists and was not created by the seed: left untouched', seed_demo_user.email;
    return null;
  end if;
  -- KYC data through the same function a customer uses (level 1), then
  -- approved as if an admin had reviewed the documents.
  if seed_demo_user.cpf is not null and not exists (select from core.kyc_profiles k where k.user_id = v_user) then
    -- (a database seeded before KYC data existed has the user at level 2 already)
    update core.users u set kyc_level = 0 where u.id = v_user;
    perform api.submit_kyc_data(v_user, seed_demo_user.name, seed_demo_user.cpf, birth_date, address);
  end if;
  update core.users u set role = seed_demo_user.role, kyc_level = seed_demo_user.kyc_level where u.id = v_user;
  -- the demo starts with a clean inbox (nothing to e-mail either)
  update core.notifications n set read_at = now(), emailed_at = now()
   where n.user_id = v_user and n.read_at is null;
  return v_user;
end
$$;
comment on function core.seed_demo_user(text, text, text, int, text, date, text, text) is
  'A demo user found by e-mail or registered (e-mail verified, created_by_seed), with KYC data when a CPF is given, at the given role and KYC level. NULL, with a warning, for an account the seed did not create (left untouched).';

create or replace function core.seed_demo_fund(admin_id bigint, email text, currency text, amount numeric)
returns void
language sql volatile as $$
  select core.post_adjustment(admin_id, u.id, currency, amount, 'Saldo inicial de demonstração', 'demo-seed-' || currency)
  from core.users u where u.email = seed_demo_fund.email and u.created_by_seed
$$;
comment on function core.seed_demo_fund(bigint, text, text, numeric) is
  'Funds a seed-created demo user through a journaled adjustment by the demo admin (fixed idempotency key per currency: a second run changes nothing); nothing for an account the seed did not create.';

create or replace function core.seed_demo(password_hash text)
returns table (email text, role text)
language plpgsql volatile as $$
declare
  v_admin bigint;
begin
  perform core.assert_demo_database();
  perform core.seed_demo_user(d.email, d.name, d.role, d.kyc, d.cpf, date '1990-05-17', d.address, password_hash)
  from (values
      ('admin@example.com', 'Admin Demo', 'admin', 0, null, null),
      ('auditor@example.com', 'Auditor Demo', 'auditor', 0, null, null),
      ('alice@example.com', 'Alice Souza', 'customer', 2, '52601815906', 'Rua das Flores, 100, São Paulo - SP'),
      ('bob@example.com', 'Bob Oliveira', 'customer', 2, '08301661305', 'Av. Atlântica, 2000, Rio de Janeiro - RJ'))
      d (email, name, role, kyc, cpf, address);

  select u.id into v_admin from core.users u where u.email = 'admin@example.com' and u.created_by_seed;
  perform core.seed_demo_fund(v_admin, f.email, f.currency, f.amount)
  from (values
      ('alice@example.com', 'BRL', 10000.00), ('alice@example.com', 'BTC', 0.05),
      ('alice@example.com', 'ETH', 1.5), ('alice@example.com', 'USDT', 2000),
      ('bob@example.com', 'BRL', 5000.00), ('bob@example.com', 'BTC', 0.12),
      ('bob@example.com', 'ETH', 2.25), ('bob@example.com', 'USDT', 1500)) f (email, currency, amount);
  return query select u.email, u.role from core.users u
    where u.email in ('admin@example.com', 'auditor@example.com', 'alice@example.com', 'bob@example.com')
      and u.created_by_seed
    order by u.id;
end
$$;
comment on function core.seed_demo(text) is
  'Creates the demo users of DESIGN.md §6 (if missing) and funds alice and bob through journaled adjustments. Idempotent. Only when the setting environment is development (BSA01 otherwise); an existing account it did not create is left untouched. Returns the demo accounts it owns.';

create or replace function core.seed_demo_offers(password_hash text)
returns table (offer_id bigint, maker text, side text, crypto text)
language plpgsql volatile as $$
declare
  v_admin bigint;
  v_user bigint;
  v record;
begin
  -- Two demo makers (KYC approved, funded by journaled adjustments like alice
  -- and bob) and a few floating-price offers, so the P2P book is not empty
  -- on a fresh `make run`. Floating prices need no index at creation; the
  -- offers are published through api.create_p2p_offer (a SELL offer holds
  -- the maker's crypto), each with a fixed idempotency key: safe to run again.
  perform core.assert_demo_database();
  select u.id into v_admin from core.users u where u.email = 'admin@example.com' and u.created_by_seed;
  if v_admin is null then
    raise exception 'seed-demo: rode core.seed_demo antes (o admin de demonstração faz os ajustes).' using errcode = 'BSA01';
  end if;
  perform core.seed_demo_user(d.email, d.name, 'customer', 2, d.cpf, date '1988-09-02', d.address, password_hash)
  from (values
      ('carla@example.com', 'Carla Mendes', '39827461591', 'Rua Augusta, 1500, São Paulo - SP'),
      ('diego@example.com', 'Diego Lima', '71538024608', 'Av. Afonso Pena, 300, Belo Horizonte - MG'))
      d (email, name, cpf, address);
  perform core.seed_demo_fund(v_admin, f.email, f.currency, f.amount)
  from (values
      ('carla@example.com', 'BRL', 20000.00), ('carla@example.com', 'BTC', 0.1),
      ('carla@example.com', 'USDT', 3000), ('diego@example.com', 'BRL', 30000.00),
      ('diego@example.com', 'ETH', 3)) f (email, currency, amount);

  for v in select * from (values
      (1, 'carla@example.com', 'SELL', 'BTC', 0.05, 1.5, 100.00, 5000.00, array['PIX', 'BALANCE'],
       'PIX: carla@example.com (Carla Mendes)'),
      (2, 'carla@example.com', 'SELL', 'USDT', 1500, 0.8, 50.00, 3000.00, array['PIX', 'TED', 'BALANCE'],
       'PIX: carla@example.com · TED: Banco 341, ag. 0001, c/c 12345-6 (Carla Mendes)'),
      (3, 'carla@example.com', 'BUY', 'ETH', 1, -1.0, 100.00, 10000.00, array['BALANCE'], null),
      (4, 'diego@example.com', 'SELL', 'ETH', 2, 1.2, 200.00, 15000.00, array['BALANCE'], null),
      (5, 'diego@example.com', 'BUY', 'BTC', 0.04, -1.2, 100.00, 8000.00, array['PIX', 'BALANCE'], null),
      (6, 'diego@example.com', 'BUY', 'USDT', 2000, -0.5, 50.00, 5000.00, array['PIX', 'TED'], null))
      o (n, email, side, crypto, amount, premium, min_brl, max_brl, methods, details)
  loop
    select u.id into v_user from core.users u where u.email = v.email and u.created_by_seed;
    continue when v_user is null;
    return query
    select c.offer_id, v.email, v.side, v.crypto
    from api.create_p2p_offer(user_id => v_user, side => v.side, crypto => v.crypto, price_type => 'floating',
                              total_amount => v.amount::numeric, min_brl => v.min_brl, max_brl => v.max_brl,
                              payment_methods => v.methods, idempotency_key => 'demo-offer-' || v.n,
                              premium_percent => v.premium::numeric, payment_details => v.details,
                              terms => 'Oferta de demonstração.') c;
  end loop;
end
$$;
comment on function core.seed_demo_offers(text) is
  'After core.seed_demo (flask seed-demo, make run): two demo makers, carla and diego (KYC approved, funded through journaled adjustments by the demo admin), and six floating-price P2P offers (BUY and SELL in BTC, ETH and USDT; PIX, TED and balance-only) published through api.create_p2p_offer with fixed idempotency keys, so a second run changes nothing. Development databases only (BSA01). Returns the offers.';
