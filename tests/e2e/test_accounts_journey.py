"""A person's journey through issue 14 in Chromium: register, open the verification mail in the sandbox
inbox and click its link, forget the password, reset it from the mailed link, log in with the new one.
The mails go through the worker's job to a real SMTP sink (aiosmtpd) and are read on its inbox page."""
from __future__ import annotations

import re

from tests.rails_support import JobsThread
from webapp.auth.tasks import send_account_mail
from sandbox.mail import InboxServer

def open_latest_mail(page, inbox_url: str, subject: str):
    """The inbox page, newest first: open the first mail with this subject."""
    for _ in range(100):
        page.goto(inbox_url)
        link = page.get_by_role("link", name=re.compile(subject))
        if link.count():
            link.first.click()
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"no mail {subject!r} in the inbox")


def test_register_verify_forget_reset_log_in(live_server, browser, mail_sink, owner, screenshot):
    app = live_server.app
    app.config["APP_URL"] = live_server.url
    worker = JobsThread(app, [send_account_mail])
    inbox = InboxServer(mail_sink)
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(live_server.url + "/register")
        page.fill("#display_name", "Carla Dias")
        page.fill("#email", "carla@example.com")
        page.fill("#password", "um-cavalo-azul-42")
        page.fill("#confirm", "um-cavalo-azul-42")
        page.get_by_role("button", name="Criar conta").click()
        page.wait_for_url("**/wallet")
        assert page.get_by_test_id("verify-banner").is_visible()

        # the mail, in the sandbox inbox, and its link
        open_latest_mail(page, inbox.url, "Confirme seu e-mail")
        assert "carla@example.com" in page.get_by_test_id("mail-body").inner_text()
        page.locator("a[href*='/account/verify/']").first.click()
        page.wait_for_url("**/wallet")
        assert "E-mail confirmado" in page.content()
        assert page.get_by_test_id("verify-banner").count() == 0

        # an anti-phishing code, shown on the security page (and screenshot at 1280 px)
        page.goto(live_server.url + "/account/security")
        page.fill("#anti_phishing_code", "girassol-42")
        page.get_by_role("button", name="Salvar").click()
        page.wait_for_url("**/account/security")
        assert page.get_by_test_id("this-device").is_visible()
        screenshot(page, "account_security")

        # log out (from the account menu), forget the password, reset it from the mail
        page.get_by_test_id("account-menu").click()
        page.get_by_role("button", name="Sair", exact=True).click()
        page.wait_for_url("**/login")
        page.get_by_test_id("forgot-link").click()
        page.fill("#email", "carla@example.com")
        page.get_by_role("button", name="Enviar link").click()
        assert page.get_by_test_id("reset-sent").is_visible()
        open_latest_mail(page, inbox.url, "Redefinição de senha")
        body = page.get_by_test_id("mail-body").inner_text()
        assert body.startswith("Código anti-phishing: girassol-42")
        screenshot(page, "sandbox_inbox_mail")
        page.locator("a[href*='/password/reset/']").first.click()
        page.fill("#password", "nova-senha-forte-77")
        page.fill("#confirm", "nova-senha-forte-77")
        page.get_by_role("button", name="Salvar nova senha").click()
        page.wait_for_url("**/login")
        assert "Senha redefinida" in page.content()

        page.fill("#email", "carla@example.com")
        page.fill("#password", "nova-senha-forte-77")
        page.get_by_role("button", name="Entrar").click()
        page.wait_for_url("**/wallet")
        assert "Carla Dias" in page.content()
        page.goto(inbox.url)
        screenshot(page, "sandbox_inbox")
        context.close()
    finally:
        worker.close()
        inbox.close()
    user = owner.execute("select email_verified_at, exits_paused_reason from core.users where email = 'carla@example.com'").fetchone()
    assert user["email_verified_at"] is not None and user["exits_paused_reason"] == "password_reset"
