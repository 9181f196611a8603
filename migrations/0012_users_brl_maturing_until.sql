-- 0012_users_brl_maturing_until: until when a customer's BRL may include
-- deposits still maturing (deposit_maturation_hours after the latest credited
-- deposit). Kept by triggers on pix_charges and settings (sql/deposits.sql),
-- so that api.transfer reads it with the customer's row instead of probing
-- the deposits on every BRL transfer (docs/PERFORMANCE.md, "Third round").
-- It only says when to look closer: core.assert_brl_mature decides.
alter table core.users add column brl_maturing_until timestamptz;

update core.users u
   set brl_maturing_until = d.latest + make_interval(hours => (select s.value::int from core.settings s
                                                               where s.name = 'deposit_maturation_hours'))
  from (select c.user_id, max(c.resolved_at) as latest from core.pix_charges c
        where c.purpose = 'deposit' and c.status = 'PAID' group by c.user_id) d
 where d.user_id = u.id;
