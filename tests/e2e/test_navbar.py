"""The navbar fits the window: at 390, 768, 1024 and 1280 px, for a customer, an admin and an auditor with a
long-ish name, in Portuguese and in English, nothing in it leaves the screen or is cut, and "Sair"/"Logout"
is on screen once the menus are opened (the collapsed menu on small screens, the account menu)."""
from __future__ import annotations

import pytest

from tests.conftest import DEMO_PASSWORD, totp_code

WIDTHS = (390, 768, 1024, 1280)
LONG_NAME = "Maria Aparecida dos Santos"
PEOPLE = {"customer": "alice@example.com", "admin": "admin@example.com", "auditor": "auditor@example.com"}
LOGOUT = {"pt_BR": "Sair", "en": "Logout"}

# Every visible item of the navbar (links, buttons, the name) is inside the window, shows its text whole
# (except the name, which is cut with an ellipsis on purpose, the whole of it in its title), and is on one line;
# the expanded navbar is one row.
NAVBAR_CHECK = """() => {
  const problems = [];
  const nav = document.querySelector('nav.navbar');
  if (!nav) return ['no navbar'];
  const width = document.documentElement.clientWidth;
  if (nav.scrollWidth > nav.clientWidth) problems.push(`navbar scrollWidth ${nav.scrollWidth} > clientWidth ${nav.clientWidth}`);
  // Expanded (no menu button), the navbar is one row.
  const toggler = nav.querySelector('.navbar-toggler');
  if (toggler && toggler.offsetParent === null && nav.offsetHeight > 72) problems.push(`the navbar is ${nav.offsetHeight} px high (more than one row)`);
  for (const el of nav.querySelectorAll('a, button, [data-testid=user-name]')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    const what = `"${(el.innerText || el.getAttribute('aria-label') || el.className).trim().slice(0, 40)}"`;
    if (box.left < -0.5 || box.right > width + 0.5) problems.push(`${what} at ${Math.round(box.left)}..${Math.round(box.right)} leaves 0..${width}`);
    const truncated = getComputedStyle(el).textOverflow === 'ellipsis';
    if (el.scrollWidth > el.clientWidth + 1 && !truncated) problems.push(`${what} is cut (${el.scrollWidth} > ${el.clientWidth})`);
    if (truncated && !(el.getAttribute('title') || '').trim()) problems.push(`${what} is cut without a title`);
    if (box.height > 44) problems.push(`${what} wraps (${Math.round(box.height)} px high)`);
  }
  return problems;
}"""


def navbar_problems(page) -> list[str]:
    """What is wrong with the navbar of the page as shown; for a logged-in person, after opening the menus,
    also whether the logout button is on screen."""
    problems = page.evaluate(NAVBAR_CHECK)
    toggler = page.locator("nav.navbar .navbar-toggler")
    if toggler.is_visible():
        toggler.click()
        page.locator("#mainnav.show").wait_for()
    account = page.locator("[data-testid=account-menu]")
    if account.count():
        account.click()
        logout = page.locator("[data-testid=logout]")
        logout.wait_for(state="visible")
        box = logout.bounding_box()
        viewport = page.viewport_size
        if not box or box["x"] < 0 or box["x"] + box["width"] > viewport["width"]:
            problems.append(f"the logout button is not on screen: {box}")
        problems += [f"(menus open) {p}" for p in page.evaluate(NAVBAR_CHECK)]
        account.click()  # closed again
    if toggler.is_visible():
        toggler.click()
        page.locator("#mainnav:not(.show):not(.collapsing)").wait_for(state="attached")
    return problems


def log_in(page, url, owner, email):
    page.goto(f"{url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit].w-100")
    page.wait_for_url(lambda url: not url.endswith("/login"))
    if page.url.endswith("/login/2fa"):
        user_id = owner.execute("select id from core.users where email = %s", (email,)).fetchone()["id"]
        page.fill("input[name=totp_code]", totp_code(owner, user_id))
        page.click("button[type=submit].w-100")
        page.wait_for_url(lambda url: not url.endswith("/login/2fa"))


@pytest.fixture
def long_names(owner, demo):
    owner.execute("update core.users set display_name = %s", (LONG_NAME,))
    return demo


@pytest.mark.parametrize("who", list(PEOPLE))
def test_navbar_fits_every_width_in_both_languages(live_server, browser, owner, long_names, screenshot, who):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server.url, owner, PEOPLE[who])
    home = page.url
    problems = []
    for lang in ("pt_BR", "en"):
        page.get_by_role("button", name="EN" if lang == "en" else "PT", exact=True).click()
        page.wait_for_load_state()
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            page.goto(home)
            problems += [f"{lang} {width}px: {p}" for p in navbar_problems(page)]
            name = page.locator("[data-testid=user-name]")
            if not name.count() or LONG_NAME not in (name.get_attribute("title") or ""):
                problems.append(f"{lang} {width}px: the whole name is not in the name's title")
            if page.locator("nav.navbar .navbar-toggler").is_visible():
                page.locator("nav.navbar .navbar-toggler").click()
                page.locator("#mainnav.show").wait_for()
            if page.locator("[data-testid=account-menu]").count():
                page.locator("[data-testid=account-menu]").click()
            logout = page.get_by_role("button", name=LOGOUT[lang], exact=True)
            screenshot(page, f"navbar-{who}-{lang}-{width}-menus-open")
            if not logout.is_visible():
                problems.append(f"{lang} {width}px: {LOGOUT[lang]} is not visible with the menus open")
    assert not problems, "\n".join(problems)
    # and the button works
    logout.click()
    page.wait_for_url("**/login")
    assert errors == []
    context.close()


def test_navbar_of_a_visitor_fits(live_server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{live_server.url}/login")
        problems += [f"{width}px: {p}" for p in navbar_problems(page)]
    assert not problems, "\n".join(problems)
    context.close()
