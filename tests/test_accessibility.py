"""What a screen reader gets: decorative icons are hidden from it (aria-hidden), every link and button has a
name (its text, or an aria-label when an icon is all it shows), images have an alt; and the favicon exists."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "webapp" / "templates"
PAGES = {
    None: ["/", "/login", "/register", "/password/forgot", "/proof-of-liabilities", "/privacidade", "/termos"],
    "alice@example.com": ["/wallet", "/wallet/BRL", "/wallet/BTC/deposit", "/wallet/BTC/withdraw", "/deposits",
                          "/withdrawals", "/market", "/market/orders", "/market/portfolio", "/p2p", "/p2p/offers/new",
                          "/p2p/offers/mine", "/p2p/trades", "/kyc", "/tax", "/notifications", "/account/security",
                          "/account/privacy", "/proof-of-liabilities/me"],
    "admin@example.com": ["/admin/", "/admin/kyc", "/admin/users", "/admin/med", "/admin/audit-log",
                          "/admin/withdrawals", "/admin/crypto", "/admin/disputes", "/wallet"],
    "auditor@example.com": ["/audit", "/audit/views/liabilities", "/audit/views/journal", "/wallet"],
}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Audit(HTMLParser):
    """Collects icons without aria-hidden, links/buttons without an accessible name, images without alt."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.stack: list[dict] = []  # open elements: tag, attrs, hidden, the text a reader gets inside

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if (tag == "i" or "bi" in classes) and attrs.get("aria-hidden") != "true":
            self.problems.append(f"icon without aria-hidden: <{tag} class=\"{attrs.get('class')}\">")
        if tag == "img" and attrs.get("alt") is None:
            self.problems.append(f"image without alt: {attrs.get('src', '')[:60]}")
        if tag in VOID:
            return
        hidden = attrs.get("aria-hidden") == "true" or bool(self.stack and self.stack[-1]["hidden"])
        self.stack.append({"tag": tag, "attrs": attrs, "hidden": hidden, "text": ""})

    def handle_endtag(self, tag):
        while self.stack:
            element = self.stack.pop()
            if element["tag"] in ("a", "button"):
                name = element["text"].strip() or element["attrs"].get("aria-label") or element["attrs"].get("title")
                if not name:
                    self.problems.append(f"<{element['tag']}> without a name: {element['attrs']}")
            if self.stack:
                self.stack[-1]["text"] += element["text"]
            if element["tag"] == tag:
                break

    def handle_data(self, data):
        if self.stack and not self.stack[-1]["hidden"]:
            self.stack[-1]["text"] += data


def problems_of(html: str) -> list[str]:
    audit = Audit()
    audit.feed(html)
    return audit.problems


def test_the_checker_catches_what_it_should():
    assert problems_of('<a href="/x"><i class="bi bi-x"></i></a>') == [
        'icon without aria-hidden: <i class="bi bi-x">', "<a> without a name: {'href': '/x'}"]
    assert problems_of('<button><i class="bi bi-x" aria-hidden="true"></i></button>') != []
    assert problems_of('<button aria-label="Fechar"><i class="bi bi-x" aria-hidden="true"></i></button>') == []
    assert problems_of('<a href="/"><i class="bi bi-x" aria-hidden="true"></i> Início</a><img src="a.png">') == [
        "image without alt: a.png"]


def test_no_template_has_an_icon_without_aria_hidden():
    bad = [f"{path.relative_to(TEMPLATES)}: {tag}" for path in sorted(TEMPLATES.rglob("*.html"))
           for tag in re.findall(r"<i\s(?:\{\{.*?\}\}|[^>{])*>", path.read_text()) if 'aria-hidden="true"' not in tag]
    assert bad == []


@pytest.mark.parametrize("email", list(PAGES))
def test_pages_read_well_aloud(client, demo, login, priced, owner, email):
    owner.execute("select * from admin.publish_liabilities_snapshot()")
    if email:
        login(email)
    found = []
    for url in PAGES[email]:
        response = client.get(url)
        assert response.status_code in (200, 403), url
        found += [f"{url}: {p}" for p in problems_of(response.get_data(as_text=True))]
    assert found == []


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/vnd.microsoft.icon"
    assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
    page = client.get("/login").get_data(as_text=True)
    for href in re.findall(r'<link rel="icon" href="([^"]+)"', page):
        assert client.get(href).status_code == 200, href
    assert 'href="/static/favicon.svg"' in page
