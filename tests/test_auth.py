"""Register, log in, log out, CSRF and throttling, through the real app and database."""
from tests.conftest import DEMO_PASSWORD


def test_register_logs_in_and_shows_wallet(client, forms):
    response = forms.post("/register", {"display_name": "Carla Dias", "email": "Carla@Example.com",
                                        "password": "um-cavalo-azul-42", "confirm": "um-cavalo-azul-42"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/wallet")
    page = client.get("/wallet").get_data(as_text=True)
    assert "Carla Dias" in page and "carla@example.com" in page
    assert "R$ 0,00" in page


def test_register_refuses_taken_email_and_weak_password(client, forms, demo):
    taken = forms.post("/register", {"display_name": "Outra Alice", "email": "alice@example.com",
                                     "password": "um-cavalo-azul-42", "confirm": "um-cavalo-azul-42"})
    assert taken.status_code == 422
    assert "Este e-mail já está cadastrado" in taken.get_data(as_text=True)

    weak = forms.post("/register", {"display_name": "Dani", "email": "dani@example.com",
                                    "password": "12345", "confirm": "12345"})
    assert weak.status_code == 422
    assert "pelo menos 10 caracteres" in weak.get_data(as_text=True)

    mismatch = forms.post("/register", {"display_name": "Dani", "email": "dani@example.com",
                                        "password": "um-cavalo-azul-42", "confirm": "outro-cavalo-43"})
    assert "As senhas não conferem" in mismatch.get_data(as_text=True)


def test_login_wrong_credentials_then_logout(client, forms, demo, login):
    wrong = forms.post("/login", {"email": "alice@example.com", "password": "not-the-password"})
    assert wrong.status_code == 401
    assert "E-mail ou senha incorretos" in wrong.get_data(as_text=True)
    unknown = forms.post("/login", {"email": "nobody@example.com", "password": "whatever-123"})
    assert unknown.status_code == 401

    login("alice@example.com")
    assert "Alice Souza" in client.get("/wallet").get_data(as_text=True)
    out = forms.post("/logout", {}, form_url="/wallet")
    assert out.status_code == 302
    assert client.get("/wallet").status_code == 302  # back to the login page


def test_lockout_after_repeated_failures(client, forms, demo, owner):
    for _ in range(4):
        assert forms.post("/login", {"email": "bob@example.com", "password": "wrong-password"}).status_code == 401
    locked = forms.post("/login", {"email": "bob@example.com", "password": "wrong-password"})
    assert locked.status_code == 429
    assert "bloqueada até" in locked.get_data(as_text=True)
    # even the right password is refused while locked
    still = forms.post("/login", {"email": "bob@example.com", "password": DEMO_PASSWORD})
    assert still.status_code == 429
    events = owner.execute("select count(*) as n from core.login_events where email = 'bob@example.com'").fetchone()
    assert events["n"] == 6


def test_post_without_csrf_token_is_refused(client, demo):
    response = client.post("/login", data={"email": "alice@example.com", "password": DEMO_PASSWORD})
    assert response.status_code == 400
    assert "formulário expirou" in response.get_data(as_text=True)
    assert client.get("/wallet").status_code == 302


def test_login_is_rate_limited(client, forms):
    codes = [forms.post("/login", {"email": f"x{i}@example.com", "password": "whatever-123"}).status_code
             for i in range(22)]
    assert codes[:20] == [401] * 20
    assert codes[-1] == 429


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"
