"""Throwaway certificates for the Banco Inter sandbox (mTLS), made with the
`openssl` command-line tool: a local CA, a server certificate for
localhost/127.0.0.1 and a client certificate, all signed by that CA.

    python -m sandbox.certs .local/inter-certs [--force]

Files written into the directory: ca.crt ca.key server.crt server.key
client.crt client.key client.pem (client cert + key in one file). Existing
files are reused unless `force=True`. Keys are P-256 (fast to generate) and
certificates last 30 days. Never use these outside a sandbox.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DAYS = "30"
_KEY_ARGS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertPaths:
    directory: Path
    ca_crt: Path
    ca_key: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path
    client_pem: Path

    @property
    def client_cert(self) -> tuple[str, str]:
        """`requests`' cert=(crt, key)."""
        return str(self.client_crt), str(self.client_key)


def paths(directory: str | os.PathLike) -> CertPaths:
    d = Path(directory)
    return CertPaths(d, d / "ca.crt", d / "ca.key", d / "server.crt", d / "server.key",
                     d / "client.crt", d / "client.key", d / "client.pem")


def _openssl(*args: str, cwd: Path):
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError("the `openssl` command is required to make sandbox certificates") from None
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"openssl {args[0]} failed: {exc.stderr.strip()}") from None


def _sign(name: str, subject: str, extensions: str, work: Path):
    """Key + CSR for `name`, signed by the CA in `work`."""
    _openssl("req", *_KEY_ARGS, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=work)
    (work / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", DAYS, "-sha256",
             "-extfile", f"{name}.ext", cwd=work)


def generate(directory: str | os.PathLike, force: bool = False,
             client_cn: str = "bs-market-sandbox-client") -> CertPaths:
    """Create (or reuse) the CA, server and client certificates in `directory`."""
    out = paths(directory)
    wanted = [out.ca_crt, out.server_crt, out.server_key, out.client_crt, out.client_key, out.client_pem]
    if not force and all(p.exists() for p in wanted):
        return out
    out.directory.mkdir(parents=True, exist_ok=True)
    # Build in a temporary directory and move into place, so a failure half-way
    # never leaves a mismatched set behind.
    with tempfile.TemporaryDirectory(prefix="certs-", dir=out.directory) as tmp:
        work = Path(tmp)
        _openssl("req", "-x509", *_KEY_ARGS, "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS,
                 "-sha256", "-subj", "/CN=bs-market sandbox CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash", cwd=work)
        common = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\nbasicConstraints=critical,CA:FALSE\n"
        _sign("server", "/CN=localhost", common + "keyUsage=critical,digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n", work)
        _sign("client", f"/CN={client_cn}", common + "keyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=clientAuth\n", work)
        (work / "client.pem").write_text((work / "client.crt").read_text() + (work / "client.key").read_text())
        for name in ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key", "client.pem"):
            target = out.directory / name
            shutil.move(str(work / name), str(target))
            if name.endswith((".key", ".pem")):
                target.chmod(0o600)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.certs",
                                     description="Make throwaway mTLS certificates for the Inter sandbox.")
    parser.add_argument("directory")
    parser.add_argument("--force", action="store_true", help="regenerate even if files exist")
    args = parser.parse_args(argv)
    out = generate(args.directory, force=args.force)
    print(f"CA {out.ca_crt}\nserver {out.server_crt} {out.server_key}\n"
          f"client {out.client_crt} {out.client_key} (combined: {out.client_pem})")


if __name__ == "__main__":
    main()
