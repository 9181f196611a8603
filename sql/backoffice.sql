-- backoffice.sql: the operator side of trust and safety.
--
-- Called by the admin blueprint (webapp/admin) with the logged-in admin as
-- first argument, and callable the same way by a DBA in psql as
-- exchange_admin: every function checks the acting admin (core.assert_admin)
-- and every change is written to the admin audit log (core.audit). Freezing
-- and manual adjustments are admin.set_user_status and admin.adjust_balance
-- (sql/ledger.sql). Withdrawal approvals and disputes live in their domains'
-- files. The e-mail copies of notifications are sent by the worker through
-- the last two functions here.

create or replace function admin.dashboard(admin_id bigint)
returns table (customers bigint, frozen bigint, kyc_pending bigint, level0 bigint, level1 bigint, level2 bigint,
               admin_actions_today bigint, books_failures bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select (select count(*) from core.users u where u.role = 'customer'),
         (select count(*) from core.users u where u.role = 'customer' and u.status = 'frozen'),
         (select count(*) from core.kyc_submissions s where s.status = 'pending'),
         (select count(*) from core.users u where u.role = 'customer' and u.kyc_level = 0),
         (select count(*) from core.users u where u.role = 'customer' and u.kyc_level = 1),
         (select count(*) from core.users u where u.role = 'customer' and u.kyc_level = 2),
         (select count(*) from core.admin_audit_log l where l.created_at >= date_trunc('day', now())),
         (select count(*) from reporting.books_health)
  from core.assert_admin(dashboard.admin_id) a
$$;
revoke all on function admin.dashboard(bigint) from public;
grant execute on function admin.dashboard(bigint) to exchange_app, exchange_admin;
comment on function admin.dashboard(bigint) is
  'Back office counters: customers, frozen accounts, KYC submissions waiting for review, customers per KYC level, admin actions today and ledger invariant failures (healthy: 0).';

-- ---------------------------------------------------------------------------
-- KYC review
-- ---------------------------------------------------------------------------

create or replace function admin.list_kyc_submissions(admin_id bigint, status text default 'pending', max_rows int default 50)
returns table (submission_id bigint, user_id bigint, email text, display_name text, full_name text, cpf text,
               birth_date date, address text, status text, created_at timestamptz, reviewed_at timestamptz,
               reviewed_by_email text, review_reason text, document_id bigint, selfie_id bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select s.id, u.id, u.email, u.display_name, p.full_name, p.cpf, p.birth_date, p.address, s.status, s.created_at,
         s.reviewed_at, r.email, s.review_reason,
         (select d.id from core.kyc_documents d where d.submission_id = s.id and d.kind = 'document'),
         (select d.id from core.kyc_documents d where d.submission_id = s.id and d.kind = 'selfie')
  from core.assert_admin(list_kyc_submissions.admin_id) a
  cross join core.kyc_submissions s
  join core.users u on u.id = s.user_id
  left join core.kyc_profiles p on p.user_id = s.user_id
  left join core.users r on r.id = s.reviewed_by
  where list_kyc_submissions.status is null or s.status = list_kyc_submissions.status
  -- the queue: oldest first; history: newest first
  order by case when list_kyc_submissions.status = 'pending' then s.id else -s.id end
  limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function admin.list_kyc_submissions(bigint, text, int) from public;
grant execute on function admin.list_kyc_submissions(bigint, text, int) to exchange_app, exchange_admin;
comment on function admin.list_kyc_submissions(bigint, text, int) is
  'KYC document submissions with the customer''s data and document ids: status pending (the review queue, oldest first), approved, rejected, or NULL for all.';

create or replace function admin.get_kyc_submission(admin_id bigint, submission_id bigint)
returns table (id bigint, user_id bigint, email text, display_name text, full_name text, cpf text,
               birth_date date, address text, status text, created_at timestamptz, reviewed_at timestamptz,
               reviewed_by_email text, review_reason text, document_id bigint, selfie_id bigint)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
  return query select * from admin.list_kyc_submissions(admin_id, null, 500) l
               where l.submission_id = get_kyc_submission.submission_id;
  if not found then
    raise exception 'Envio de documentos não encontrado.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function admin.get_kyc_submission(bigint, bigint) from public;
grant execute on function admin.get_kyc_submission(bigint, bigint) to exchange_app, exchange_admin;
comment on function admin.get_kyc_submission(bigint, bigint) is 'One KYC submission with the customer''s data and document ids. BSN01 when missing.';

create or replace function admin.review_kyc(admin_id bigint, submission_id bigint, approve boolean, reason text)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_sub core.kyc_submissions;
  v_reason text := nullif(btrim(coalesce(reason, '')), '');
begin
  perform core.assert_admin(admin_id);
  select * into v_sub from core.kyc_submissions s where s.id = review_kyc.submission_id for update;
  if not found then
    raise exception 'Envio de documentos não encontrado.' using errcode = 'BSN01';
  end if;
  if v_sub.status <> 'pending' then
    raise exception 'Este envio já foi analisado (%).', v_sub.status using errcode = 'BSS01';
  end if;
  if v_sub.user_id = admin_id then
    raise exception 'Um administrador não pode analisar os próprios documentos.' using errcode = 'BSA01';
  end if;
  if approve is null then
    raise exception 'Escolha aprovar ou recusar.' using errcode = 'BSV01';
  end if;
  if not approve and (v_reason is null or length(v_reason) < 5) then
    raise exception 'Informe o motivo da recusa (ao menos 5 caracteres): o cliente vai lê-lo.'
      using errcode = 'BSV01', column = 'reason';
  end if;
  v_reason := coalesce(v_reason, 'Documentos conferidos');
  update core.kyc_submissions s
     set status = case when approve then 'approved' else 'rejected' end,
         reviewed_by = admin_id, reviewed_at = now(), review_reason = v_reason
   where s.id = v_sub.id;
  if approve then
    update core.users u set kyc_level = 2 where u.id = v_sub.user_id;
    perform core.security_event(v_sub.user_id, 'kyc_approved');
    perform core.notify(v_sub.user_id, 'kyc.approved',
                        'Documentos aprovados: sua conta está no nível 2, com os maiores limites.', '/kyc');
  else
    perform core.security_event(v_sub.user_id, 'kyc_rejected', v_reason);
    perform core.notify(v_sub.user_id, 'kyc.rejected',
                        'Documentos recusados: ' || v_reason || '. Envie novamente em /kyc.', '/kyc');
  end if;
  perform core.audit(admin_id, case when approve then 'kyc_approve' else 'kyc_reject' end, v_sub.user_id, v_reason,
                     jsonb_build_object('submission_id', v_sub.id));
end
$$;
revoke all on function admin.review_kyc(bigint, bigint, boolean, text) from public;
grant execute on function admin.review_kyc(bigint, bigint, boolean, text) to exchange_app, exchange_admin;
comment on function admin.review_kyc(bigint, bigint, boolean, text) is
  'Approves (customer to KYC level 2) or rejects (reason mandatory, shown to the customer) a pending document submission; notifies the customer and writes the admin audit log. BSS01 when already reviewed.';

-- ---------------------------------------------------------------------------
-- Customer lookup
-- ---------------------------------------------------------------------------

create or replace function admin.search_users(admin_id bigint, query text)
returns table (user_id bigint, email text, display_name text, role text, status text, kyc_level int, cpf text,
               created_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select u.id, u.email, u.display_name, u.role, u.status, u.kyc_level, p.cpf, u.created_at
  from core.assert_admin(search_users.admin_id) a
  cross join core.users u
  left join core.kyc_profiles p on p.user_id = u.id
  where length(btrim(coalesce(query, ''))) > 0 and (
        u.email = lower(btrim(query))
     or (length(btrim(query)) >= 3 and strpos(u.email, lower(btrim(query))) > 0)
     or u.id = substring(btrim(query) from '^#?([0-9]{1,18})$')::bigint
     or (btrim(query) ~ '^[0-9. -]+$' and p.cpf = core.cpf_digits(query) and length(p.cpf) = 11))
  order by u.id
  limit 50
$$;
revoke all on function admin.search_users(bigint, text) from public;
grant execute on function admin.search_users(bigint, text) to exchange_app, exchange_admin;
comment on function admin.search_users(bigint, text) is
  'Finds users by id (42 or #42), CPF (with or without punctuation) or e-mail (exact, or containing the text); at most 50.';

create or replace function admin.get_customer(admin_id bigint, user_id bigint)
returns table (id bigint, email text, display_name text, role text, status text, frozen_reason text,
               kyc_level int, full_name text, cpf text, birth_date date, address text, created_at timestamptz,
               last_login_at timestamptz, locked_until timestamptz, twofactor_enabled boolean)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform core.assert_admin(admin_id);
  return query
    select u.id, u.email, u.display_name, u.role, u.status, u.frozen_reason, u.kyc_level, p.full_name, p.cpf,
           p.birth_date, p.address, u.created_at, u.last_login_at,
           case when u.locked_until > now() then u.locked_until end,
           exists (select from core.user_totp t where t.user_id = u.id and t.confirmed_at is not null)
    from core.users u left join core.kyc_profiles p on p.user_id = u.id
    where u.id = get_customer.user_id;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
end
$$;
revoke all on function admin.get_customer(bigint, bigint) from public;
grant execute on function admin.get_customer(bigint, bigint) to exchange_app, exchange_admin;
comment on function admin.get_customer(bigint, bigint) is
  'A user''s profile for the back office: status (and why frozen), KYC level and data, last login, lockout, 2FA. BSN01 when missing.';

create or replace function admin.customer_balances(admin_id bigint, user_id bigint)
returns table (currency text, available numeric, locked numeric, open_holds bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select c.code,
         coalesce(sum(ac.balance) filter (where ac.purpose = 'available'), 0),
         coalesce(sum(ac.balance) filter (where ac.purpose = 'locked'), 0),
         (select count(*) from core.holds h where h.user_id = customer_balances.user_id and h.currency = c.code
                                              and h.status = 'open')
  from core.assert_admin(customer_balances.admin_id) a
  cross join core.currencies c
  left join core.accounts ac on ac.user_id = customer_balances.user_id and ac.currency = c.code
  group by c.code, c.sort_order
  order by c.sort_order
$$;
revoke all on function admin.customer_balances(bigint, bigint) from public;
grant execute on function admin.customer_balances(bigint, bigint) to exchange_app, exchange_admin;
comment on function admin.customer_balances(bigint, bigint) is
  'A customer''s available and locked balance and number of open holds per currency (as reporting.user_balances, for the back office).';

create or replace function admin.customer_history(admin_id bigint, user_id bigint, max_rows int default 50)
returns table (entry_id bigint, created_at timestamptz, kind text, reference text, description text, currency text,
               purpose text, amount numeric, balance_after numeric)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select e.id, e.created_at, e.kind, e.reference, e.description, p.currency, ac.purpose, p.amount, p.balance_after
  from core.assert_admin(customer_history.admin_id) a
  cross join core.accounts ac
  join core.postings p on p.account_id = ac.id
  join core.entries e on e.id = p.entry_id and e.created_at = p.created_at
  where ac.user_id = customer_history.user_id
  order by e.id desc, p.leg
  limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function admin.customer_history(bigint, bigint, int) from public;
grant execute on function admin.customer_history(bigint, bigint, int) to exchange_app, exchange_admin;
comment on function admin.customer_history(bigint, bigint, int) is
  'A customer''s latest ledger postings (available and locked accounts, every currency), newest first, with the entry they belong to.';

create or replace function admin.list_audit_log(admin_id bigint, target_user_id bigint default null,
                                                max_rows int default 50, skip int default 0)
returns table (audit_id bigint, created_at timestamptz, admin_id bigint, admin_email text, action text,
               target_user_id bigint, target_email text, reason text, details jsonb, total_rows bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select l.id, l.created_at, l.admin_id, adm.email, l.action, l.target_user_id, t.email, l.reason, l.details,
         count(*) over ()
  from core.assert_admin(list_audit_log.admin_id) a
  cross join core.admin_audit_log l
  left join core.users adm on adm.id = l.admin_id
  left join core.users t on t.id = l.target_user_id
  where list_audit_log.target_user_id is null or l.target_user_id = list_audit_log.target_user_id
  order by l.id desc
  limit least(greatest(max_rows, 1), 200) offset greatest(skip, 0)
$$;
revoke all on function admin.list_audit_log(bigint, bigint, int, int) from public;
grant execute on function admin.list_audit_log(bigint, bigint, int, int) to exchange_app, exchange_admin;
comment on function admin.list_audit_log(bigint, bigint, int, int) is
  'The append-only admin audit log, newest first, optionally for one target customer; total_rows counts all matching rows (for paging).';

-- ---------------------------------------------------------------------------
-- E-mail copies of notifications (the worker; no acting admin)
-- ---------------------------------------------------------------------------

create or replace function admin.list_unsent_notifications(max_rows int default 50)
returns table (notification_id bigint, user_id bigint, email text, display_name text, kind text, message text,
               link text, created_at timestamptz, anti_phishing_code text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select n.id, u.id, u.email, u.display_name, n.kind, n.message, n.link, n.created_at, u.anti_phishing_code
  from core.notifications n join core.users u on u.id = n.user_id
  where n.emailed_at is null
  order by n.id
  limit least(greatest(max_rows, 1), 500)
$$;
revoke all on function admin.list_unsent_notifications(int) from public;
grant execute on function admin.list_unsent_notifications(int) to exchange_worker, exchange_admin;
comment on function admin.list_unsent_notifications(int) is
  'Notifications whose e-mail copy has not been sent yet, oldest first, with the customer''s anti-phishing code for the top of the mail (the worker sends them, then calls admin.mark_notification_emailed). Healthy: a short list.';

create or replace function admin.mark_notification_emailed(notification_id bigint)
returns boolean
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
  with marked as (
    update core.notifications n set emailed_at = now()
    where n.id = mark_notification_emailed.notification_id and n.emailed_at is null returning 1)
  select exists (select from marked)
$$;
revoke all on function admin.mark_notification_emailed(bigint) from public;
grant execute on function admin.mark_notification_emailed(bigint) to exchange_worker, exchange_admin;
comment on function admin.mark_notification_emailed(bigint) is
  'Records that a notification''s e-mail copy was sent (true the first time, false if it already was).';
