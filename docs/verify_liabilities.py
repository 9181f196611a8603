#!/usr/bin/env python3
"""Verify that your balance is included in a bs-market proof of liabilities.

Standard library only. Download your proof from "Prova de passivos → Minha
prova → Baixar JSON" (/proof-of-liabilities/me.json?currency=BRL), then:

    python3 verify_liabilities.py proof.json
    python3 verify_liabilities.py proof.json --published https://<exchange>/proof-of-liabilities.json

The first form recomputes your leaf from (salt, user id, currency, balance)
and folds the sibling path up to the root written in the proof. The second
also checks that this root is the one the exchange published for everyone
(so it cannot show you a tree of your own). See docs/PROOF_OF_LIABILITIES.md.

Exit status 0 when the proof verifies, 1 when it does not.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.request


def leaf_hash(salt: str, user_id, currency: str, balance: str) -> bytes:
    """sha256 of the UTF-8 text "salt:user_id:currency:balance" (balance as published)."""
    return hashlib.sha256(f"{salt}:{user_id}:{currency}:{balance}".encode("utf-8")).digest()


def fold(leaf: bytes, path: list[dict]) -> bytes:
    """Hash the leaf up the path: a left sibling goes before, a right one after."""
    node = leaf
    for step in path:
        sibling = bytes.fromhex(step["hash"])
        if step["side"] == "left":
            node = hashlib.sha256(sibling + node).digest()
        elif step["side"] == "right":
            node = hashlib.sha256(node + sibling).digest()
        else:
            raise ValueError(f"bad side in path: {step['side']!r}")
    return node


def verify(proof: dict) -> list[str]:
    """The problems found in a proof; an empty list means it verifies."""
    problems = []
    leaf = leaf_hash(proof["salt"], proof["user_id"], proof["currency"], proof["balance"])
    if leaf.hex() != proof["leaf_hash"]:
        problems.append(f"leaf hash: computed {leaf.hex()}, the proof says {proof['leaf_hash']}")
    root = fold(leaf, proof["path"])
    if root.hex() != proof["root"]:
        problems.append(f"root: computed {root.hex()}, the proof says {proof['root']}")
    return problems


def published_root(source: str, snapshot_id: int, currency: str) -> str | None:
    """The root the exchange published (a URL or a saved JSON file of /proof-of-liabilities.json)."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 (the user's URL)
            data = json.load(response)
    else:
        with open(source, encoding="utf-8") as fh:
            data = json.load(fh)
    for row in data["roots"]:
        if row["snapshot_id"] == snapshot_id and row["currency"] == currency:
            return row["root"]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("proof", help="your proof (JSON file downloaded from the exchange)")
    parser.add_argument("--published", help="URL or file of the public roots (/proof-of-liabilities.json)")
    args = parser.parse_args(argv)
    with open(args.proof, encoding="utf-8") as fh:
        proof = json.load(fh)
    problems = verify(proof)
    if args.published:
        root = published_root(args.published, proof["snapshot_id"], proof["currency"])
        if root is None:
            problems.append(f"snapshot {proof['snapshot_id']} {proof['currency']} is not among the published roots")
        elif root != proof["root"]:
            problems.append(f"published root {root} differs from the proof's root {proof['root']}")
    if problems:
        print("FAILED: the proof does not verify")
        for problem in problems:
            print("  -", problem)
        return 1
    print(f"OK: {proof['balance']} {proof['currency']} of user {proof['user_id']} is included in "
          f"snapshot {proof['snapshot_id']} ({proof.get('published_at', '?')}), "
          f"root {proof['root']}, total {proof.get('total', '?')} over {proof.get('leaf_count', '?')} leaves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
