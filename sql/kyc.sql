-- kyc.sql: know-your-customer data, documents and levels.
--
-- Called by the kyc blueprint (webapp/kyc). Level 1 is reached as soon as
-- the customer's data is valid (name, a CPF with the right check digits and
-- not used by another customer, 18 or older, address); level 2 when an admin
-- approves the identity document and selfie (sql/backoffice.sql). The files
-- themselves stay on disk: the app stores them under a random name and
-- records their metadata here. Limits per level: core.kyc_limits (the
-- domains enforce them with core.enforce_daily_limit / enforce_trade_limit).

-- CPF check digits: core.is_valid_cpf (sql/identifiers.sql).

create or replace function api.list_kyc_limits()
returns table (kyc_level int, daily_deposit_brl numeric, daily_withdrawal_brl numeric, daily_market_brl numeric,
               daily_p2p_brl numeric, per_trade_max_brl numeric, how_to_raise text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select l.kyc_level, l.daily_deposit_brl, l.daily_withdrawal_brl, l.daily_market_brl, l.daily_p2p_brl,
         l.per_trade_max_brl, l.how_to_raise
  from core.kyc_limits l order by l.kyc_level
$$;
revoke all on function api.list_kyc_limits() from public;
grant execute on function api.list_kyc_limits() to exchange_app;
comment on function api.list_kyc_limits() is 'The limits of every KYC level (to show what raising the level gives).';

create or replace function api.get_kyc(user_id bigint)
returns table (kyc_level int, full_name text, cpf text, birth_date date, address text, verified_at timestamptz,
               submission_id bigint, submission_status text, submitted_at timestamptz, review_reason text,
               document_id bigint, selfie_id bigint)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select u.kyc_level, p.full_name, p.cpf, p.birth_date, p.address, p.verified_at,
         s.id, s.status, s.created_at, s.review_reason,
         (select d.id from core.kyc_documents d where d.submission_id = s.id and d.kind = 'document'),
         (select d.id from core.kyc_documents d where d.submission_id = s.id and d.kind = 'selfie')
  from core.users u
  left join core.kyc_profiles p on p.user_id = u.id
  left join lateral (select * from core.kyc_submissions s where s.user_id = u.id order by s.id desc limit 1) s on true
  where u.id = get_kyc.user_id
$$;
revoke all on function api.get_kyc(bigint) from public;
grant execute on function api.get_kyc(bigint) to exchange_app;
comment on function api.get_kyc(bigint) is
  'A customer''s KYC state: level, confirmed data (if any) and the latest document submission with its status and review reason.';

create or replace function api.submit_kyc_data(user_id bigint, full_name text, cpf text, birth_date date, address text,
                                               ip text default null)
returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_cpf text := core.cpf_digits(cpf);
  v_min_age int := core.setting('kyc_min_age_years')::int;
begin
  select * into v_user from core.users u where u.id = submit_kyc_data.user_id for update;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if v_user.role <> 'customer' then
    raise exception 'Apenas clientes fazem a verificação de identidade.' using errcode = 'BSA01';
  end if;
  if v_user.kyc_level >= 2 or exists (select from core.kyc_submissions s
                                      where s.user_id = submit_kyc_data.user_id and s.status = 'pending') then
    raise exception 'Seus dados já estão em análise ou aprovados e não podem mais ser alterados. Fale com o suporte.'
      using errcode = 'BSS01';
  end if;
  if full_name is null or length(btrim(full_name)) not between 3 and 120 or btrim(full_name) !~ '\s' then
    raise exception 'Informe seu nome completo, como no documento.' using errcode = 'BSV01', column = 'full_name';
  end if;
  if not core.is_valid_cpf(cpf) then
    raise exception 'CPF inválido: confira os números.' using errcode = 'BSV01', column = 'cpf';
  end if;
  if birth_date is null or birth_date < date '1900-01-01' or birth_date > current_date then
    raise exception 'Informe uma data de nascimento válida.' using errcode = 'BSV01', column = 'birth_date';
  end if;
  if birth_date > (current_date - make_interval(years => v_min_age))::date then
    raise exception 'É preciso ter pelo menos % anos.', v_min_age using errcode = 'BSV01', column = 'birth_date';
  end if;
  if address is null or length(btrim(address)) not between 5 and 300 then
    raise exception 'Informe seu endereço completo.' using errcode = 'BSV01', column = 'address';
  end if;
  -- The unique index decides (two customers racing on one CPF): one wins.
  begin
    insert into core.kyc_profiles (user_id, full_name, cpf, birth_date, address)
    values (submit_kyc_data.user_id, btrim(full_name), v_cpf, birth_date, btrim(address))
    on conflict on constraint kyc_profiles_pkey do update
      set full_name = excluded.full_name, cpf = excluded.cpf, birth_date = excluded.birth_date,
          address = excluded.address, updated_at = now();
  exception when unique_violation then
    raise exception 'Este CPF já está cadastrado em outra conta. Fale com o suporte.'
      using errcode = 'BSV01', column = 'cpf';
  end;
  update core.users u set kyc_level = greatest(u.kyc_level, 1) where u.id = submit_kyc_data.user_id;
  perform core.security_event(submit_kyc_data.user_id, 'kyc_data_confirmed', null, ip);
  if v_user.kyc_level < 1 then
    perform core.notify(submit_kyc_data.user_id, 'kyc.level1',
                        'Dados confirmados: sua conta está no nível 1 e os limites aumentaram.', '/kyc');
  end if;
  return greatest(v_user.kyc_level, 1);
end
$$;
revoke all on function api.submit_kyc_data(bigint, text, text, date, text, text) from public;
grant execute on function api.submit_kyc_data(bigint, text, text, date, text, text) to exchange_app;
comment on function api.submit_kyc_data(bigint, text, text, date, text, text) is
  'Records a customer''s KYC data and raises the account to level 1: full name, CPF (check digits, unique across customers), birth date (at least kyc_min_age_years old), address. Returns the new level. BSV01 with the offending field, BSS01 when the documents are under review or approved.';

create or replace function api.submit_kyc_documents(
  user_id bigint,
  document_path text, document_sha256 text, document_content_type text, document_size int,
  selfie_path text, selfie_sha256 text, selfie_content_type text, selfie_size int,
  ip text default null)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_user core.users;
  v_submission bigint;
begin
  select * into v_user from core.users u where u.id = submit_kyc_documents.user_id for update;
  if not found then
    raise exception 'Cliente não encontrado.' using errcode = 'BSN01';
  end if;
  if v_user.kyc_level < 1 then
    raise exception 'Confirme seus dados (nome, CPF, nascimento) antes de enviar documentos.' using errcode = 'BSS01';
  end if;
  if v_user.kyc_level >= 2 then
    raise exception 'Seus documentos já foram aprovados.' using errcode = 'BSS01';
  end if;
  if exists (select from core.kyc_submissions s where s.user_id = submit_kyc_documents.user_id and s.status = 'pending') then
    raise exception 'Seus documentos já estão em análise. Aguarde a resposta.' using errcode = 'BSS01';
  end if;
  if document_content_type not in ('image/png', 'image/jpeg', 'application/pdf') then
    raise exception 'Envie o documento em PNG, JPEG ou PDF.' using errcode = 'BSV01', column = 'document';
  end if;
  if selfie_content_type not in ('image/png', 'image/jpeg', 'application/pdf') then
    raise exception 'Envie a selfie em PNG, JPEG ou PDF.' using errcode = 'BSV01', column = 'selfie';
  end if;
  if document_size not between 1 and 5242880 then
    raise exception 'O documento deve ter no máximo 5 MB.' using errcode = 'BSV01', column = 'document';
  end if;
  if selfie_size not between 1 and 5242880 then
    raise exception 'A selfie deve ter no máximo 5 MB.' using errcode = 'BSV01', column = 'selfie';
  end if;
  insert into core.kyc_submissions (user_id) values (submit_kyc_documents.user_id) returning id into v_submission;
  insert into core.kyc_documents (submission_id, user_id, kind, storage_path, sha256, content_type, size_bytes)
  values (v_submission, submit_kyc_documents.user_id, 'document', document_path, document_sha256,
          document_content_type, document_size),
         (v_submission, submit_kyc_documents.user_id, 'selfie', selfie_path, selfie_sha256,
          selfie_content_type, selfie_size);
  perform core.security_event(submit_kyc_documents.user_id, 'kyc_documents_submitted', null, ip);
  return v_submission;
end
$$;
revoke all on function api.submit_kyc_documents(bigint, text, text, text, int, text, text, text, int, text) from public;
grant execute on function api.submit_kyc_documents(bigint, text, text, text, int, text, text, text, int, text) to exchange_app;
comment on function api.submit_kyc_documents(bigint, text, text, text, int, text, text, text, int, text) is
  'Records an identity document and a selfie (metadata of the files the app stored: path, sha256, content type, size) as a submission pending admin review. BSS01 before level 1, after approval or while one is pending; BSV01 bad type or size.';

create or replace function api.get_kyc_document(user_id bigint, document_id bigint)
returns table (id bigint, owner_id bigint, kind text, storage_path text, sha256 text, content_type text,
               size_bytes int)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_doc core.kyc_documents;
begin
  select * into v_doc from core.kyc_documents d where d.id = get_kyc_document.document_id;
  -- Someone else's document looks exactly like a missing one.
  if not found or (v_doc.user_id <> get_kyc_document.user_id
                   and not exists (select from core.users u where u.id = get_kyc_document.user_id
                                   and u.role = 'admin' and u.status = 'active')) then
    raise exception 'Documento não encontrado.' using errcode = 'BSN01';
  end if;
  return query select v_doc.id, v_doc.user_id, v_doc.kind, v_doc.storage_path, v_doc.sha256, v_doc.content_type,
                      v_doc.size_bytes;
end
$$;
revoke all on function api.get_kyc_document(bigint, bigint) from public;
grant execute on function api.get_kyc_document(bigint, bigint) to exchange_app;
comment on function api.get_kyc_document(bigint, bigint) is
  'Where a KYC file is stored, for its owner or an active admin only; BSN01 for anyone else (as if it did not exist).';
