"""KYC through the app: the data form (level 1), document upload (type by content, size), who may see
the documents, and the admin review that raises the level to 2."""
from __future__ import annotations

import hashlib
import io

import pytest


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 300
PDF = b"%PDF-1.4\n%test\n"
CARLA = {"display_name": "Carla Dias", "email": "carla@example.com", "password": "um-cavalo-azul-42",
         "confirm": "um-cavalo-azul-42"}
CARLA_DATA = {"full_name": "Carla Dias Lima", "cpf": "529.982.247-25", "birth_date": "1990-05-01",
              "address": "Rua das Flores, 10, São Paulo - SP"}


@pytest.fixture
def uploads(app, tmp_path):
    app.config["UPLOAD_DIR"] = str(tmp_path / "uploads")
    return tmp_path / "uploads"


def register(forms, who=CARLA):
    assert forms.post("/register", who).status_code == 302


def files(document=PNG, selfie=JPEG, names=("rg.png", "selfie.jpg")):
    return {"document": (io.BytesIO(document), names[0]), "selfie": (io.BytesIO(selfie), names[1])}


def upload(forms, **kwargs):
    return forms.post("/kyc/documents", files(**kwargs), form_url="/kyc", content_type="multipart/form-data")


def stored_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_page_shows_level_limits_and_how_to_raise(client, forms):
    register(forms)
    page = client.get("/kyc").get_data(as_text=True)
    assert "Nível 0" in page and "R$ 500,00" in page  # level 0 daily withdrawal
    assert "Confirme seus dados" in page  # how to raise, from core.kyc_limits
    assert 'data-testid="limits-table"' in page and "R$ 200.000,00" in page


def test_data_form_validates_and_raises_to_level_1(client, forms, owner):
    register(forms)
    bad_cpf = forms.post("/kyc", dict(CARLA_DATA, cpf="123.456.789-00"))
    assert bad_cpf.status_code == 422 and "CPF inválido" in bad_cpf.get_data(as_text=True)
    young = forms.post("/kyc", dict(CARLA_DATA, birth_date="2015-01-01"))
    assert young.status_code == 422 and "pelo menos 18 anos" in young.get_data(as_text=True)
    short = forms.post("/kyc", dict(CARLA_DATA, full_name="Carla"))
    assert short.status_code == 422 and "nome completo" in short.get_data(as_text=True)
    assert owner.execute("select kyc_level from core.users where email = 'carla@example.com'").fetchone()["kyc_level"] == 0

    ok = forms.post("/kyc", CARLA_DATA)
    assert ok.status_code == 302
    page = client.get("/kyc").get_data(as_text=True)
    assert "Nível 1" in page and "Envie documento e selfie" in page
    assert owner.execute("select kyc_level from core.users where email = 'carla@example.com'").fetchone()["kyc_level"] == 1
    assert "nível 1" in client.get("/notifications").get_data(as_text=True)


def test_cpf_is_unique_across_customers(client, forms):
    register(forms)
    assert forms.post("/kyc", CARLA_DATA).status_code == 302
    forms.post("/logout", {}, form_url="/wallet")
    register(forms, dict(CARLA, email="dani@example.com", display_name="Dani Reis"))
    taken = forms.post("/kyc", dict(CARLA_DATA, full_name="Dani Reis", cpf="52998224725"))
    assert taken.status_code == 422 and "já está cadastrado em outra conta" in taken.get_data(as_text=True)


def test_documents_need_level_1_and_are_checked_by_content(client, forms, owner, uploads):
    register(forms)
    early = upload(forms)
    assert early.status_code == 409 and "Confirme seus dados" in early.get_data(as_text=True)
    assert stored_files(uploads) == []  # the refused files were removed

    assert forms.post("/kyc", CARLA_DATA).status_code == 302
    fake = upload(forms, document=b"GIF89a" + b"\x00" * 50)
    assert fake.status_code == 422 and "Formato não aceito" in fake.get_data(as_text=True)
    renamed = upload(forms, selfie=b"<html>not an image</html>", names=("rg.png", "selfie.png"))
    assert renamed.status_code == 422
    big = upload(forms, document=PNG + b"\x00" * (5 * 1024 * 1024))
    assert big.status_code == 422 and "máximo é 5 MB" in big.get_data(as_text=True)
    huge = upload(forms, document=PNG + b"\x00" * (6 * 1024 * 1024), selfie=PNG + b"\x00" * (6 * 1024 * 1024))
    assert huge.status_code == 413
    empty = forms.post("/kyc/documents", {}, form_url="/kyc")
    assert empty.status_code == 422 and "Escolha um arquivo" in empty.get_data(as_text=True)
    assert stored_files(uploads) == []

    ok = upload(forms, document=PDF, names=("rg.pdf", "selfie.jpg"))
    assert ok.status_code == 302
    saved = stored_files(uploads)
    assert len(saved) == 2 and all(p.name not in ("rg.pdf", "selfie.jpg") for p in saved)
    docs = owner.execute("select * from core.kyc_documents order by kind").fetchall()
    assert [(d["kind"], d["content_type"], d["size_bytes"]) for d in docs] == [
        ("document", "application/pdf", len(PDF)), ("selfie", "image/jpeg", len(JPEG))]
    assert docs[0]["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert "Em análise" in client.get("/kyc").get_data(as_text=True)
    again = upload(forms)
    assert again.status_code == 409 and "em análise" in again.get_data(as_text=True)
    # data cannot be changed while under review
    assert forms.post("/kyc", dict(CARLA_DATA, address="Outra rua, 20")).status_code == 409


def test_documents_only_for_their_owner_and_admins(app, client, forms, owner, demo, login, uploads):
    register(forms)
    forms.post("/kyc", CARLA_DATA)
    assert upload(forms).status_code == 302
    doc_id, selfie_id = [r["id"] for r in owner.execute("select id from core.kyc_documents order by kind")]
    mine = client.get(f"/kyc/documents/{doc_id}")
    assert mine.status_code == 200 and mine.data == PNG and mine.mimetype == "image/png"
    assert "no-store" in mine.headers["Cache-Control"]
    assert client.get(f"/kyc/documents/{selfie_id}").data == JPEG
    forms.post("/logout", {}, form_url="/wallet")

    assert client.get(f"/kyc/documents/{doc_id}").status_code == 302  # anonymous: log in first
    login("bob@example.com")
    for url in (f"/kyc/documents/{doc_id}", f"/kyc/documents/{selfie_id}", f"/kyc/documents/{selfie_id + 1000}"):
        assert client.get(url).status_code in (403, 404), url
    forms.post("/logout", {}, form_url="/wallet")
    login("auditor@example.com")
    assert client.get(f"/kyc/documents/{doc_id}").status_code == 404
    forms.post("/logout", {}, form_url="/wallet")
    login("admin@example.com")
    assert client.get(f"/kyc/documents/{doc_id}").data == PNG


def test_admin_approval_raises_to_level_2_and_rejection_explains(client, forms, owner, demo, login, uploads):
    register(forms)
    forms.post("/kyc", CARLA_DATA)
    upload(forms)
    forms.post("/logout", {}, form_url="/wallet")
    carla = owner.execute("select id from core.users where email = 'carla@example.com'").fetchone()["id"]
    first = owner.execute("select id from core.kyc_submissions").fetchone()["id"]

    login("admin@example.com")
    queue = client.get("/admin/kyc").get_data(as_text=True)
    assert "carla@example.com" in queue and "52998224725" in queue
    detail = client.get(f"/admin/kyc/{first}").get_data(as_text=True)
    assert "Carla Dias Lima" in detail and "/kyc/documents/" in detail
    no_reason = forms.post(f"/admin/kyc/{first}/reject", {"reason": ""}, form_url=f"/admin/kyc/{first}")
    assert no_reason.status_code == 422 and "motivo da recusa" in no_reason.get_data(as_text=True)
    assert forms.post(f"/admin/kyc/{first}/reject", {"reason": "Foto do documento ilegível"},
                      form_url=f"/admin/kyc/{first}").status_code == 302
    twice = forms.post(f"/admin/kyc/{first}/approve", {"reason": ""}, form_url=f"/admin/kyc/{first}")
    assert twice.status_code == 409
    forms.post("/logout", {}, form_url="/admin/")

    forms.post("/login", {"email": "carla@example.com", "password": CARLA["password"]})
    page = client.get("/kyc").get_data(as_text=True)
    assert "Recusados" in page and "Foto do documento ilegível" in page
    assert "ilegível" in client.get("/notifications").get_data(as_text=True)
    assert upload(forms).status_code == 302
    second = owner.execute("select max(id) as id from core.kyc_submissions").fetchone()["id"]
    forms.post("/logout", {}, form_url="/wallet")

    login("admin@example.com")
    assert forms.post(f"/admin/kyc/{second}/approve", {"reason": ""}, form_url=f"/admin/kyc/{second}").status_code == 302
    assert owner.execute("select kyc_level from core.users where id = %s", (carla,)).fetchone()["kyc_level"] == 2
    actions = [r["action"] for r in owner.execute(
        "select action from core.admin_audit_log where target_user_id = %s order by id", (carla,))]
    assert actions == ["kyc_reject", "kyc_approve"]
    forms.post("/logout", {}, form_url="/admin/")
    forms.post("/login", {"email": "carla@example.com", "password": CARLA["password"]})
    assert "Nível 2" in client.get("/kyc").get_data(as_text=True)
