"""Uploaded files on disk: the one store of KYC documents and P2P proofs/evidence.

- What is accepted, in one place: PNG, JPEG or PDF (checked by content, the magic bytes, never by the
  name or the browser's type), not empty, at most MAX_BYTES. Anything else is an UploadError whose
  message goes on the form (422).
- Where: under UPLOAD_DIR, one folder per store (STORES: the names core.file_deletions uses), KYC
  files in a folder per customer. Directories 0700, files 0600 (only the app's user reads them),
  each under a fresh random name (never the customer's), written once (O_EXCL).
- The database keeps the metadata (api.submit_kyc_documents, api.add_p2p_proof …) and decides who
  may read a file; the views serve it only after that call. Nothing here runs inside a transaction.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from .formatting import N_

MAX_BYTES = 5 * 1024 * 1024
# (magic bytes, content type, extension)
TYPES = [
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"%PDF-", "application/pdf", "pdf"),
]
# store → its folder under UPLOAD_DIR (KYC files predate the per-store folders: <user id>/<name>)
STORES = {"kyc": "", "p2p": "p2p"}
FILE_MODE = 0o600
DIR_MODE = 0o700
ROOT = Path(__file__).resolve().parent.parent


class UploadError(ValueError):
    """A file refused before it is stored (message for the form)."""


@dataclass(frozen=True)
class Upload:
    """A checked upload, not yet stored."""
    data: bytes
    original_name: str
    content_type: str
    extension: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read(file_storage, required: bool = False) -> Upload | None:
    """The uploaded file, checked; None when no file was chosen (UploadError if `required`)."""
    if file_storage is None or not getattr(file_storage, "filename", None):
        if required:
            raise UploadError(N_("Escolha um arquivo."))
        return None
    data = file_storage.stream.read(MAX_BYTES + 1)
    if not data:
        raise UploadError(N_("O arquivo está vazio."))
    if len(data) > MAX_BYTES:
        raise UploadError(N_("Arquivo grande demais: o máximo é 5 MB."))
    for magic, content_type, extension in TYPES:
        if data.startswith(magic):
            name = os.path.basename(file_storage.filename.replace("\\", "/"))[:200] or "arquivo"
            return Upload(data, name, content_type, extension)
    raise UploadError(N_("Formato não aceito: envie uma foto PNG ou JPEG, ou um PDF."))


def base_dir(app=None) -> Path:
    configured = Path((app or current_app).config.get("UPLOAD_DIR") or ".local/uploads")
    return configured if configured.is_absolute() else ROOT / configured


def store_dir(store: str, app=None) -> Path:
    if store not in STORES:
        raise ValueError(f"unknown upload store {store!r}")
    return base_dir(app) / STORES[store] if STORES[store] else base_dir(app)


def _private_dir(path: Path) -> None:
    """Create the folder (and missing parents) 0700; an existing one is made 0700 too."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)


def save(upload: Upload, store: str, folder: str = "") -> str:
    """Write the file under a fresh random name; returns its path within the store ("[folder/]name")."""
    if folder and not folder.isalnum():
        raise ValueError(f"bad upload folder {folder!r}")
    target = store_dir(store)
    _private_dir(target)
    if folder:
        target = target / folder
        _private_dir(target)
    name = f"{secrets.token_urlsafe(24)}.{upload.extension}"
    fd = os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)  # never overwrite
    os.fchmod(fd, FILE_MODE)  # whatever the umask
    with os.fdopen(fd, "wb") as handle:
        handle.write(upload.data)
    return f"{folder}/{name}" if folder else name


def path_of(store: str, relative: str, app=None) -> Path:
    """The absolute path of a stored file; ValueError for anything outside its store."""
    base = store_dir(store, app).resolve()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise ValueError(f"path outside the {store} store: {relative!r}")
    return path


def existing(store: str, relative: str) -> Path | None:
    """The stored file's path when it is there (and inside its store), else None."""
    try:
        path = path_of(store, relative)
    except ValueError:
        return None
    return path if path.is_file() else None


def remove(store: str, relative: str | None) -> None:
    if relative:
        try:
            path_of(store, relative).unlink(missing_ok=True)
        except ValueError:
            pass
