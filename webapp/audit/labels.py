"""What /audit shows in the reader's language: the health checks, the reports and their columns named in
Portuguese (English in the catalog), and the cells of the tables in the reader's notation (15.203,20 /
15,203.20; 3,75 ETH, not 3.750000000000000000). The views keep their English identifiers and COMMENTs (the
reference for DBAs, `\\dv+ reporting.*`); the CSV export keeps the exact values (views.cell)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from ..formatting import N_, datetimeformat, number, translate
from . import bp

# check_name of reporting.health_checks → (title, what is checked)
CHECKS = {
    "trial_balance": (N_("Balancete"), N_("Cada moeda soma zero (lançamentos e saldos guardados).")),
    "balance_mismatches": (N_("Saldos guardados"), N_("O saldo guardado de cada conta é a soma dos seus lançamentos.")),
    "held_mismatches": (N_("Saldos bloqueados"), N_("O saldo bloqueado de cada cliente é a soma dos seus bloqueios abertos.")),
    "books_health": (N_("Invariantes dos livros"), N_("Todas as invariantes do razão (admin.check_books) valem agora.")),
    "book_alerts": (N_("Verificação agendada"), N_("A última verificação agendada dos livros (worker) não achou nada.")),
    "escrow_mismatches": (N_("Custódia P2P"), N_("A custódia P2P confere com as ofertas e negociações que garante.")),
    "rails_reconciliation": (N_("Conciliação PIX"), N_("Cada depósito e saque PIX confere com o razão.")),
    "omnibus_position": (N_("Conta omnibus Binance"), N_("A conta omnibus na Binance confere com as execuções das ordens de mercado liquidadas.")),
    "stale_items": (N_("Itens parados"), N_("Nada parado além do prazo.")),
    "suspicious_activity": (N_("Atividade suspeita"), N_("Nenhum padrão suspeito esperando revisão.")),
    "liability_snapshots": (N_("Prova de passivos"), N_("Uma prova de passivos foi publicada recentemente.")),
}

# reporting view → what it shows (and, where it helps, what healthy looks like)
VIEWS = {
    "account_closures": N_("Contas encerradas: até quando os dados pessoais ficam guardados, quando foram anonimizados e os arquivos pendentes."),
    "activity_by_day": N_("Movimento do razão por dia (horário de São Paulo), tipo de lançamento e moeda: lançamentos, valor movimentado e taxas."),
    "admin_audit_log": N_("Registro de todas as ações de administradores: quem, o quê, com quem, quando e por quê."),
    "balance_mismatches": N_("Contas cujo saldo guardado difere da soma dos lançamentos. Saudável: vazio."),
    "book_alerts": N_("Cada falha achada pela verificação agendada dos livros. Saudável: nenhuma linha da última execução."),
    "book_checks": N_("Cada execução agendada das invariantes do razão (a cada 5 minutos). Saudável: a última é recente e sem falhas."),
    "books_health": N_("Falhas de admin.check_books() (invariantes do razão e contadores de reputação P2P). Saudável: vazio."),
    "catalog": N_("Todos os relatórios com sua descrição: o índice desta página."),
    "crypto_deposits": N_("Todos os depósitos on-chain vistos, com a transferência para a conta principal."),
    "crypto_in_transit": N_("Cripto a caminho: depósitos confirmando, depósitos ainda não transferidos e saques em andamento."),
    "crypto_withdrawal_mismatches": N_("Saques de cripto cujo bloqueio não confere com o estado, ou em processamento há mais de duas horas. Saudável: vazio."),
    "crypto_withdrawals": N_("Todos os saques de cripto com seu bloqueio."),
    "customer_statements": N_("Cada lançamento nas contas dos clientes, com o saldo depois dele (filtre por cliente e moeda para um extrato)."),
    "escrow_mismatches": N_("Custódia P2P que não fecha: bloqueio fechado, valor diferente ou bloqueio sem oferta nem negociação. Saudável: vazio."),
    "fee_revenue_by_day": N_("Receita de taxas por dia (horário de São Paulo), moeda e tipo de lançamento. Saudável: taxas ≥ 0."),
    "health_checks": N_("O painel desta página: uma linha por verificação, com o número de linhas com problema."),
    "held_mismatches": N_("Clientes cujo saldo bloqueado difere da soma dos bloqueios abertos. Saudável: vazio."),
    "journal": N_("Cada lançamento com sua partida: o razão completo, só de inclusão."),
    "liabilities": N_("Tudo o que devemos aos clientes por moeda (disponível, bloqueado e total), ao lado da contrapartida do sistema e da última prova publicada."),
    "liability_snapshots": N_("Cada prova de passivos publicada: raiz de Merkle, total devido e número de clientes por moeda."),
    "market_orders": N_("Todas as ordens da mesa de mercado com a execução na Binance, spread, taxa e resíduo."),
    "market_orders_stuck": N_("Ordens de mercado em execução muito depois do prazo de liquidação. Saudável: vazio."),
    "omnibus_position": N_("A conta omnibus na Binance por moeda contra as ordens de mercado liquidadas. Saudável: diferença zero."),
    "omnibus_vs_ledger": N_("Por moeda: o que o razão diz que temos na Binance contra o último saldo informado pela Binance."),
    "open_escrow": N_("Cripto em custódia P2P: cada bloqueio aberto com a oferta ou negociação que garante."),
    "open_holds": N_("Todos os bloqueios abertos. Saudável: por cliente e moeda somam o saldo bloqueado."),
    "open_holds_by_purpose": N_("Bloqueios abertos somados por finalidade e moeda. Saudável: nenhum vencido."),
    "p2p_escrow_mismatches": N_("Negociações e ofertas P2P cujo bloqueio não cobre exatamente o valor devido. Saudável: vazio."),
    "p2p_pix_refunds_due": N_("Pagamentos PIX de negociações P2P que ninguém pode receber e ainda não foram devolvidos. Saudável: vazio."),
    "p2p_trades": N_("Todas as negociações P2P (sem chat nem dados bancários)."),
    "p2p_volume_by_day": N_("Negociações P2P concluídas por dia (horário de São Paulo) e cripto: quantidade, volume e taxas."),
    "pix_charges": N_("Todas as cobranças PIX (depósitos e P2P)."),
    "pix_charges_attention": N_("Cobranças PIX que precisam de uma pessoa: em revisão, pendentes depois do vencimento ou sem cobrança no provedor. Saudável: vazio."),
    "pix_clawbacks": N_("Créditos PIX estornados pelo banco do pagador (MED): valor, o que saiu do saldo do cliente e o que ainda é devido."),
    "pix_refunds": N_("Pagamentos PIX que devolvemos ao pagador no provedor. Saudável: nenhum pendente antigo nem falho esquecido."),
    "provider_notifications": N_("Webhooks recebidos e o que o worker lançou para cada um. Saudável: nada pendente por muito tempo."),
    "rails_mismatches": N_("As linhas da conciliação PIX que não conferem (faltando, inesperadas ou diferentes). Saudável: vazio."),
    "rails_reconciliation": N_("Cada depósito e saque PIX ao lado do que o razão fez por ele."),
    "reversible_exposure": N_("Clientes com créditos PIX que ainda podem ser estornados, ou com saídas bloqueadas depois de um estorno."),
    "stale_items": N_("Itens parados além do prazo: bloqueios vencidos, negociações sem pagamento, ofertas vencidas, depósitos pendentes."),
    "suspicious_activity": N_("Padrões que merecem um olhar humano, uma linha por regra disparada. Não são erros: cada linha é revisada."),
    "system_balances": N_("Saldo de cada tipo de conta do sistema por moeda (taxas são receita; compensação e omnibus espelham dinheiro fora do razão)."),
    "trial_balance": N_("Soma de todos os lançamentos e de todos os saldos guardados por moeda. Saudável: zero nas duas colunas."),
    "user_balances": N_("Saldo disponível e bloqueado de cada cliente por moeda. Saudável: nenhum negativo."),
    "withdrawal_mismatches": N_("Saques PIX cujo bloqueio não confere com o estado, ou em processamento há mais de uma hora. Saudável: vazio."),
    "withdrawals": N_("Todos os saques PIX com seu bloqueio."),
}

# Column headers (the column's identifier stays in the filter, the sort links and the CSV).
COLUMNS = {
    "id": N_("Nº"), "user_id": N_("Cliente"), "email": N_("E-mail"), "currency": N_("Moeda"), "coin": N_("Moeda"),
    "crypto": N_("Cripto"), "amount": N_("Valor"), "status": N_("Estado"), "state": N_("Estado"),
    "created_at": N_("Criado em"), "resolved_at": N_("Resolvido em"), "reference": N_("Referência"),
    "description": N_("Descrição"), "detail": N_("Detalhe"), "kind": N_("Tipo"), "purpose": N_("Finalidade"),
    "provider": N_("Provedor"), "attempts": N_("Tentativas"), "last_error": N_("Último erro"), "reason": N_("Motivo"),
    "fee": N_("Taxa"), "fees": N_("Taxas"), "total": N_("Total"), "available": N_("Disponível"),
    "locked": N_("Bloqueado"), "balance": N_("Saldo"), "balance_after": N_("Saldo depois"), "day": N_("Dia"),
    "entries": N_("Lançamentos"), "moved": N_("Movimentado"), "entry_id": N_("Lançamento"), "leg": N_("Partida"),
    "account_id": N_("Conta"), "accounts": N_("Contas"), "hold_id": N_("Bloqueio"), "hold_status": N_("Estado do bloqueio"),
    "holds": N_("Bloqueios"), "expires_at": N_("Vence em"), "expired": N_("Vencidos"), "oldest_at": N_("Mais antigo"),
    "check_name": N_("Verificação"), "check_id": N_("Execução"), "checked_at": N_("Verificado em"),
    "failure_count": N_("Falhas"), "failures": N_("Falhas"), "latest": N_("Última"), "severity": N_("Gravidade"),
    "view_name": N_("Relatório"), "cached": N_("Guardado"), "computed": N_("Calculado"),
    "cached_total": N_("Total guardado"), "open_holds": N_("Bloqueios abertos"),
    "customers_with_balance": N_("Clientes com saldo"), "system_counterpart": N_("Contrapartida do sistema"),
    "last_proof_total": N_("Total da última prova"), "last_proof_at": N_("Última prova em"),
    "snapshot_id": N_("Publicação"), "published_by": N_("Publicada por"), "root": N_("Raiz"),
    "leaf_count": N_("Clientes"), "trade_id": N_("Negociação"), "offer_id": N_("Oferta"), "order_id": N_("Ordem"),
    "price": N_("Preço"), "brl_amount": N_("Valor em R$"), "crypto_amount": N_("Quantidade de cripto"),
    "side": N_("Lado"), "symbol": N_("Par"), "network": N_("Rede"), "address": N_("Endereço"), "tx_id": N_("Transação"),
    "rule": N_("Regra"), "counterparty_id": N_("Contraparte"), "occurred_at": N_("Quando"), "since": N_("Desde"),
    "overdue": N_("Atraso"), "item_kind": N_("Item"), "item_id": N_("Nº do item"), "problem": N_("Problema"),
    "expected": N_("Esperado"), "held": N_("Bloqueado"), "difference": N_("Diferença"), "outcome": N_("Resultado"),
    "source": N_("Origem"), "requested": N_("Pedido"), "paid_amount": N_("Valor pago"),
    "credited_amount": N_("Valor creditado"), "paid_at": N_("Pago em"), "completed_at": N_("Concluído em"),
    "admin_id": N_("Administrador"), "admin_email": N_("E-mail do administrador"), "action": N_("Ação"),
    "target_user_id": N_("Cliente afetado"), "details": N_("Detalhes"), "trades": N_("Negociações"),
    "brl_volume": N_("Volume em R$"), "crypto_volume": N_("Volume em cripto"), "after_dispute": N_("Após disputa"),
    "exposure": N_("Exposição"), "owed": N_("Devido"), "recovered": N_("Recuperado"), "debt": N_("Dívida"),
    "payer_cpf": N_("CPF do pagador"), "buyer_id": N_("Comprador"), "seller_id": N_("Vendedor"),
    "payment_method": N_("Forma de pagamento"), "failure_reason": N_("Motivo da falha"), "bucket": N_("Saldo"),
    "account_version": N_("Versão da conta"), "closed_at": N_("Encerrada em"), "direction": N_("Sentido"),
    "ledger_balance": N_("Saldo no razão"), "orders": N_("Ordens"), "dust": N_("Resíduo"),
    "anonymise_blocked": N_("Anonimização impedida"), "anonymised_at": N_("Anonimizada em"),
    "attach_attempts": N_("Tentativas de vínculo"), "binance_free": N_("Livre na Binance"),
    "binance_id": N_("Nº na Binance"), "binance_locked": N_("Bloqueado na Binance"),
    "binance_net": N_("Líquido na Binance"), "binance_order_id": N_("Ordem na Binance"),
    "binance_status": N_("Estado na Binance"), "binance_withdrawing": N_("Sacando na Binance"),
    "brl_value": N_("Valor em R$"), "cancel_reason": N_("Motivo do cancelamento"), "checks": N_("Verificações"),
    "claimed_at": N_("Assumido em"), "clawback_id": N_("Estorno"), "client_order_id": N_("Nº da ordem (nosso)"),
    "commission": N_("Comissão"), "confirmations": N_("Confirmações"), "credited_at": N_("Creditado em"),
    "cummulative_quote_qty": N_("Total executado (cotação)"), "debt_recovered": N_("Dívida recuperada"),
    "deliveries": N_("Entregas"), "dust_brl": N_("Resíduo em R$"), "dust_crypto": N_("Resíduo em cripto"),
    "end_to_end_id": N_("E2E do PIX"), "escrow_kind": N_("Tipo de custódia"), "executed_qty": N_("Quantidade executada"),
    "exits_blocked_at": N_("Saídas bloqueadas em"), "exits_blocked_reason": N_("Motivo do bloqueio de saídas"),
    "expected_ledger": N_("Esperado no razão"), "fee_charged": N_("Taxa cobrada"),
    "files_deleted": N_("Arquivos apagados"), "files_pending": N_("Arquivos pendentes"),
    "first_seen_at": N_("Visto pela primeira vez em"), "from_settled_orders": N_("Das ordens liquidadas"),
    "holds_balance": N_("Soma dos bloqueios"), "key_type": N_("Tipo de chave"),
    "last_maturity_at": N_("Última maturação em"), "last_note": N_("Última nota"), "ledger_amount": N_("Valor no razão"),
    "ledger_entries": N_("Lançamentos no razão"), "ledger_owed": N_("Devido no razão"), "maker_id": N_("Anunciante"),
    "next_maturity_at": N_("Próxima maturação em"), "object_status": N_("Estado do objeto"),
    "on_sub_accounts": N_("Nas subcontas"), "other_movements": N_("Outros movimentos"),
    "pix_charge_id": N_("Cobrança PIX"), "pix_paid_amount": N_("Valor pago por PIX"), "processed_at": N_("Processado em"),
    "provider_amount": N_("Valor no provedor"), "provider_id": N_("Nº no provedor"),
    "provider_message": N_("Mensagem do provedor"), "provider_payment_id": N_("Pagamento no provedor"),
    "provider_payout_id": N_("Pagamento de saque no provedor"), "provider_refund_id": N_("Devolução no provedor"),
    "provider_status": N_("Estado no provedor"), "received_at": N_("Recebido em"), "refund_id": N_("Devolução"),
    "required_confirmations": N_("Confirmações exigidas"), "resolution": N_("Resolução"),
    "resolved_by": N_("Resolvido por"), "resource_id": N_("Recurso"), "retention_until": N_("Guardado até"),
    "reviewed_by": N_("Revisado por"), "settled_at": N_("Liquidado em"), "spread_charged": N_("Spread cobrado"),
    "status_detail": N_("Detalhe do estado"), "sweep_status": N_("Estado da transferência"),
    "sweep_tran_id": N_("Transferência para a conta principal"), "taken_at": N_("Aceita em"),
    "taker_id": N_("Tomador"), "topic": N_("Tópico"),
}

# Columns whose values are codes (shown in the reader's language; the code stays in the tooltip and filters).
CODE_COLUMNS = ("status", "state", "side", "bucket", "direction", "payment_method", "escrow_kind",
                "sweep_status", "hold_status", "resolution")
CODES = {
    # states (the P2P and rails tables write them in capitals, the others in lower case)
    "PENDING": N_("pendente"), "pending": N_("pendente"), "OPEN": N_("aberta"), "open": N_("aberto"),
    "PAID": N_("paga"), "COMPLETED": N_("concluída"), "completed": N_("concluído"), "CANCELLED": N_("cancelada"),
    "cancelled": N_("cancelado"), "EXPIRED": N_("expirado"), "expired": N_("expirado"), "FAILED": N_("falhou"),
    "failed": N_("falhou"), "REJECTED": N_("recusado"), "rejected": N_("recusado"), "REFUNDED": N_("devolvido"),
    "refunded": N_("devolvido"), "REVIEW": N_("em análise"), "DISPUTED": N_("em disputa"),
    "AWAITING_APPROVAL": N_("aguardando aprovação"), "PROCESSING": N_("processando"), "EXECUTING": N_("executando"),
    "SENDING": N_("enviando"), "DONE": N_("feito"), "READY": N_("pronto"), "CREDITED": N_("creditado"),
    "CLAWED_BACK": N_("estornado (MED)"), "WRONG_NETWORK": N_("rede errada"), "active": N_("ativo"),
    "approved": N_("aprovado"), "captured": N_("capturado"), "closed": N_("encerrado"), "filled": N_("executada"),
    "frozen": N_("congelado"), "paused": N_("pausado"), "released": N_("liberado"), "sent": N_("enviado"),
    "split": N_("dividido"),
    # sides, payment methods
    "BUY": N_("compra"), "buy": N_("compra"), "SELL": N_("venda"), "sell": N_("venda"),
    "BALANCE": N_("saldo bs-market"), "PIX": N_("PIX"), "PIX_CONFIRMED": N_("PIX confirmado"), "TED": N_("TED"),
    # balances and the commonest entry kinds
    "available": N_("disponível"), "locked": N_("bloqueado"), "fees": N_("taxas"),
    "clearing_mercadopago": N_("compensação Mercado Pago"), "clearing_inter": N_("compensação Banco Inter"),
    "binance_omnibus": N_("omnibus Binance"), "adjustments": N_("ajustes"), "receivables": N_("a receber"),
    "refunds_payable": N_("devoluções a pagar"), "adjustment": N_("ajuste"),
    "transfer": N_("transferência"), "deposit": N_("depósito"), "withdrawal": N_("saque"),
    "crypto_deposit": N_("depósito de cripto"), "crypto_withdrawal": N_("saque de cripto"), "hold": N_("bloqueio"),
    "pix_clawback": N_("estorno PIX (MED)"), "pix_clawback_recovery": N_("recuperação de estorno"),
    "pix_refund": N_("devolução PIX"), "pix_refund_due": N_("devolução PIX a fazer"),
}

BRL_COLUMNS = ("brl", "price")  # money columns in reais whatever the row's currency


def column_label(name: str) -> str:
    return translate(COLUMNS[name]) if name in COLUMNS else name


def view_description(name: str, comment: str = "") -> str:
    return translate(VIEWS[name]) if name in VIEWS else comment


def check_text(check: dict) -> tuple[str, str]:
    title, description = CHECKS.get(check["check_name"], (check["check_name"], check["description"]))
    return translate(title), translate(description)


def display(value, column: str = "", row: dict | None = None) -> str:
    """A cell as the reader reads it: amounts in their currency's scale and the locale's notation (trailing
    zeros trimmed), dates and times in the locale, yes/no, JSON and text as they are."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return translate(N_("sim")) if value else translate(N_("não"))
    if isinstance(value, Decimal):
        row = row or {}
        currency = "BRL" if any(part in column for part in BRL_COLUMNS) else (
            row.get("currency") or row.get("coin") or row.get("crypto"))
        return number(value, currency if isinstance(currency, str) else None)
    if isinstance(value, datetime):
        return datetimeformat(value, "short")
    if isinstance(value, date):
        from flask_babel import format_date
        return format_date(value, "short")
    if isinstance(value, str) and value in CODES and (column in CODE_COLUMNS or column in ("kind", "purpose")):
        return translate(CODES[value])
    from .views import cell
    return cell(value)


@bp.app_context_processor
def audit_labels():
    return {"audit_column": column_label, "audit_view": view_description, "audit_check": check_text}


bp.add_app_template_filter(display, "audit_display")
