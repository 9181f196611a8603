"""The one upload store (webapp/uploads.py), used by KYC documents and P2P proofs/evidence: what it
accepts (PNG, JPEG, PDF by content, 1 byte to 5 MB), where it writes (random names; directories 0700,
files 0600 whatever the umask) and that nothing outside a store can be read or removed through it."""
from __future__ import annotations

import io
import os
import re

import pytest
from werkzeug.datastructures import FileStorage

from tests.test_kyc import CARLA_DATA, PDF, PNG, register, upload
from webapp import uploads

JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 300


def chosen(data: bytes, name: str = "foto.png") -> FileStorage:
    return FileStorage(stream=io.BytesIO(data), filename=name)


@pytest.fixture
def store(app, tmp_path):
    app.config["UPLOAD_DIR"] = str(tmp_path / "uploads")
    with app.app_context():
        yield tmp_path / "uploads"


@pytest.fixture
def open_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("data,content_type,extension", [
    (PNG, "image/png", "png"), (JPEG, "image/jpeg", "jpg"), (PDF, "application/pdf", "pdf")])
def test_accepted_by_content(store, data, content_type, extension):
    got = uploads.read(chosen(data, "whatever.gif"))
    assert (got.content_type, got.extension, got.size, got.original_name) == (
        content_type, extension, len(data), "whatever.gif")


@pytest.mark.parametrize("data,message", [
    (b"", "O arquivo está vazio."),
    (PNG + b"\x00" * (5 * 1024 * 1024), "Arquivo grande demais: o máximo é 5 MB."),
    (b"GIF89a" + b"\x00" * 50, "Formato não aceito: envie uma foto PNG ou JPEG, ou um PDF."),
    (b"<html>not an image</html>", "Formato não aceito: envie uma foto PNG ou JPEG, ou um PDF."),
])
def test_refused_with_a_message_for_the_form(store, data, message):
    with pytest.raises(uploads.UploadError, match=re.escape(message)):
        uploads.read(chosen(data))


def test_exactly_five_megabytes_is_accepted(store):
    assert uploads.read(chosen(PNG + b"\x00" * (5 * 1024 * 1024 - len(PNG)))).size == 5 * 1024 * 1024


def test_nothing_chosen(store):
    assert uploads.read(None) is None and uploads.read(chosen(b"", "")) is None
    with pytest.raises(uploads.UploadError, match="Escolha um arquivo"):
        uploads.read(chosen(b"", ""), required=True)


def test_both_stores_write_private_files_under_random_names(store, open_umask):
    (store / "p2p").mkdir(parents=True, mode=0o755)   # a folder left by the old P2P store
    os.chmod(store / "p2p", 0o755)
    kyc = uploads.save(uploads.read(chosen(PNG, "rg.png")), "kyc", folder="42")
    p2p = uploads.save(uploads.read(chosen(PDF, "comprovante.pdf")), "p2p")
    assert re.fullmatch(r"42/[A-Za-z0-9_-]{32}\.png", kyc) and re.fullmatch(r"[A-Za-z0-9_-]{32}\.pdf", p2p)
    assert (store / kyc).read_bytes() == PNG and (store / "p2p" / p2p).read_bytes() == PDF
    assert mode(store / kyc) == mode(store / "p2p" / p2p) == 0o600
    assert mode(store) == mode(store / "42") == mode(store / "p2p") == 0o700
    again = uploads.save(uploads.read(chosen(PNG, "rg.png")), "kyc", folder="42")
    assert again != kyc   # never the same name twice, never overwritten


def test_paths_stay_inside_their_store(store):
    name = uploads.save(uploads.read(chosen(PNG)), "p2p")
    assert uploads.existing("p2p", name) == (store / "p2p" / name).resolve()
    assert uploads.existing("p2p", "../p2p/" + name) == (store / "p2p" / name).resolve()
    (store / "secret.txt").write_text("x")
    for outside in ("../secret.txt", "/etc/passwd", "../../../etc/passwd"):
        assert uploads.existing("p2p", outside) is None
        with pytest.raises(ValueError):
            uploads.path_of("p2p", outside)
        uploads.remove("p2p", outside)
    assert (store / "secret.txt").exists()
    with pytest.raises(ValueError):
        uploads.save(uploads.read(chosen(PNG)), "kyc", folder="../1")
    with pytest.raises(ValueError):
        uploads.store_dir("tmp")
    uploads.remove("p2p", name)
    assert uploads.existing("p2p", name) is None


def test_kyc_upload_through_the_web_is_private(app, client, forms, owner, tmp_path, open_umask):
    app.config["UPLOAD_DIR"] = str(tmp_path / "uploads")
    register(forms)
    assert forms.post("/kyc", CARLA_DATA).status_code == 302
    big = upload(forms, selfie=JPEG + b"\x00" * (5 * 1024 * 1024))
    assert big.status_code == 422 and "Arquivo grande demais: o máximo é 5 MB." in big.get_data(as_text=True)
    assert upload(forms).status_code == 302
    rows = owner.execute("select storage_path from core.kyc_documents").fetchall()
    assert len(rows) == 2
    for row in rows:
        path = tmp_path / "uploads" / row["storage_path"]
        assert mode(path) == 0o600 and mode(path.parent) == 0o700
