"""KYC files on disk: type checked by content (magic bytes), size-limited,
stored under UPLOAD_DIR with a random name. The database keeps only their
metadata (api.submit_kyc_documents), so nothing here runs inside a transaction.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from ..formatting import N_

MAX_BYTES = 5 * 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent.parent
# (magic bytes, content type, extension)
SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"%PDF-", "application/pdf", "pdf"),
]


class UploadError(ValueError):
    """A file refused before it is stored (message for the form)."""


@dataclass
class StoredFile:
    path: str          # relative to UPLOAD_DIR: "<user id>/<random>.<ext>"
    sha256: str
    content_type: str
    size: int


def upload_dir() -> Path:
    configured = current_app.config.get("UPLOAD_DIR") or os.environ.get("UPLOAD_DIR") or ".local/uploads"
    path = Path(configured)
    return path if path.is_absolute() else ROOT / path


def sniff(data: bytes) -> tuple[str, str]:
    for magic, content_type, ext in SIGNATURES:
        if data.startswith(magic):
            return content_type, ext
    raise UploadError(N_("Formato não aceito: envie uma foto PNG ou JPEG, ou um PDF."))


def read_upload(file_storage) -> tuple[bytes, str, str]:
    """The file's bytes, content type and extension; UploadError when empty, too big or of another type."""
    if file_storage is None or not getattr(file_storage, "filename", None):
        raise UploadError(N_("Escolha um arquivo."))
    data = file_storage.stream.read(MAX_BYTES + 1)
    if not data:
        raise UploadError(N_("O arquivo está vazio."))
    if len(data) > MAX_BYTES:
        raise UploadError(N_("Arquivo grande demais: o máximo é 5 MB."))
    content_type, ext = sniff(data)
    return data, content_type, ext


def save(user_id: int, data: bytes, content_type: str, ext: str) -> StoredFile:
    folder = upload_dir() / str(int(user_id))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{secrets.token_hex(16)}.{ext}"
    with open(folder / name, "xb") as fh:  # never overwrite
        fh.write(data)
    os.chmod(folder / name, 0o600)
    return StoredFile(path=f"{int(user_id)}/{name}", sha256=hashlib.sha256(data).hexdigest(),
                      content_type=content_type, size=len(data))


def remove(stored: StoredFile | None) -> None:
    if stored is not None:
        try:
            (upload_dir() / stored.path).unlink()
        except FileNotFoundError:
            pass


def resolve(relative: str) -> Path | None:
    """The absolute path of a stored file, refusing anything outside UPLOAD_DIR."""
    base = upload_dir().resolve()
    path = (base / relative).resolve()
    if base not in path.parents or not path.is_file():
        return None
    return path
