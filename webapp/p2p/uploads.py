"""Proof files: PNG, JPEG or PDF up to 5 MB, type checked by content, stored under UPLOAD_DIR.

Files get a random name (never the customer's); their metadata goes to the database through an api.*
function, which also decides who may see them.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from ..formatting import N_

MAX_BYTES = 5 * 1024 * 1024
MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"%PDF-", "application/pdf", "pdf"),
]
STORED_NAME = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(png|jpg|pdf)$")
ROOT = Path(__file__).resolve().parent.parent.parent


class UploadError(ValueError):
    """A file we refuse, with a message for the form."""


@dataclass
class Upload:
    data: bytes
    original_name: str
    content_type: str
    extension: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read(storage) -> Upload | None:
    """The uploaded file, checked; None when no file was chosen."""
    if storage is None or not getattr(storage, "filename", ""):
        return None
    data = storage.stream.read(MAX_BYTES + 1)
    if not data:
        raise UploadError(N_("O arquivo está vazio."))
    if len(data) > MAX_BYTES:
        raise UploadError(N_("O arquivo passa de 5 MB."))
    for magic, content_type, extension in MAGIC:
        if data.startswith(magic):
            name = os.path.basename(storage.filename.replace("\\", "/"))[:200] or "arquivo"
            return Upload(data, name, content_type, extension)
    raise UploadError(N_("Envie uma imagem PNG ou JPEG, ou um PDF."))


def directory() -> Path:
    configured = Path(current_app.config.get("UPLOAD_DIR") or ".local/uploads")
    base = configured if configured.is_absolute() else ROOT / configured
    path = base / "p2p"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(upload: Upload) -> str:
    """Write the file under a fresh random name; returns that name."""
    name = f"{secrets.token_urlsafe(24)}.{upload.extension}"
    with open(directory() / name, "xb") as handle:
        handle.write(upload.data)
    return name


def remove(stored_name: str) -> None:
    if STORED_NAME.match(stored_name):
        (directory() / stored_name).unlink(missing_ok=True)


def path_of(stored_name: str) -> Path:
    if not STORED_NAME.match(stored_name):
        raise FileNotFoundError(stored_name)
    return directory() / stored_name
