"""Browser journeys through the clients module (Playwright + Debian Chromium on a live server).

Each test gets a fresh organisation (`world`), a fresh browser context and signs in through the
real login form; assertions are on what a person would see.
"""

import os
import re

import pytest
from playwright.sync_api import expect

from app.core.validators import PASSWORD_SPECIALS
from tests.browser.conftest import login

XSS_FIRST = "<script>window.__x=1</script>"
XSS_LAST = '"><img src=x onerror=window.__x=1>'
XSS_DESC = "<svg onload=window.__x=1>"
TRANSLATIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "translations")

# Records CSP violations, so "inert" means escaped, not merely blocked by the policy (R18).
CSP_PROBE = ("window.__csp = []; document.addEventListener('securitypolicyviolation',"
             " function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });")


def usable_options(page, selector):
    """Labels of the options a person can pick (not hidden or disabled by clientdesk.js)."""
    return page.eval_on_selector(
        selector, "s => Array.from(s.options).filter(o => o.value && !o.hidden && !o.disabled)"
                  ".map(o => o.textContent.trim())")


def list_rows_text(page):
    return page.locator("table tbody tr").all_inner_texts()


def test_admin_creates_client_with_generated_password(page, live_server, world):
    login(page, live_server, "admin")
    page.click("a[href*='/clients/add']")
    page.wait_for_url(re.compile(r"/clients/add/?$"))

    page.fill("#email", "ada.lovelace@example.org")
    page.fill("#first_name", "Ada")
    page.fill("#last_name", "Lovelace")
    page.fill("#phone", "+4915123000001")
    page.select_option("#project_id", label="Project One")

    pw = page.locator("#password")
    assert pw.get_attribute("type") == "password"
    page.click("#cd-pw-toggle")
    assert pw.get_attribute("type") == "text"
    assert page.inner_text("#cd-pw-toggle").strip() == "Hide"
    page.click("#cd-pw-toggle")
    assert pw.get_attribute("type") == "password"
    assert page.inner_text("#cd-pw-toggle").strip() == "Show"

    page.click("#cd-pw-generate")
    # expect() polls outside the page's CSP (wait_for_function would need 'unsafe-eval').
    expect(pw).to_have_value(re.compile(r".+"))
    value = pw.input_value()
    assert len(value) >= 8
    assert re.search(r"[A-Z]", value) and re.search(r"[a-z]", value) and re.search(r"\d", value)
    assert any(ch in PASSWORD_SPECIALS for ch in value), value
    assert pw.get_attribute("type") == "text"  # a generated password is shown
    page.click("#cd-pw-toggle")
    assert pw.get_attribute("type") == "password"
    page.click("#cd-pw-toggle")
    assert pw.get_attribute("type") == "text"

    page.click("#cd-save")
    page.wait_for_url(re.compile(r"/clients/edit/\d+$"))
    cid = int(re.search(r"/clients/edit/(\d+)$", page.url).group(1))
    assert page.locator(".alert-danger").count() == 0

    page.goto(f"{live_server}/clients/show/{cid}")
    title = page.inner_text("#cd-card-title").strip()
    assert re.fullmatch(r"Ada Lovelace • UID: C\d{5}P", title), title
    assert title.endswith("C00001P")  # the world resets the UID counter
    if os.environ.get("CD_CARD_SCREENSHOT"):
        page.screenshot(path=os.environ["CD_CARD_SCREENSHOT"], full_page=True)


def test_desk_and_manager_dropdowns_follow_the_project(page, live_server, world):
    login(page, live_server, "admin")
    page.goto(f"{live_server}/clients/add")
    page.select_option("#project_id", label="Project One")
    desks = usable_options(page, "#desk_id")
    assert any("Desk 1a" in d for d in desks) and any("Desk 1b" in d for d in desks), desks
    assert not any("Desk 2a" in d for d in desks), desks
    managers = usable_options(page, "#manager_id")
    assert "Agent_D1A Tester" in managers and "Mgr_P1 Tester" in managers, managers
    assert "Agent_P2 Tester" not in managers, managers

    # A desk keeps the people on that desk and the project-wide staff (no desk of their own in P1).
    page.select_option("#desk_id", label="Desk 1a (P1)")
    managers = usable_options(page, "#manager_id")
    assert "Agent_D1A Tester" in managers and "Mgr_P1 Tester" in managers, managers
    assert "Agent_P2 Tester" not in managers, managers

    # Switching the project drops the desk that no longer fits and offers the other project's desks.
    page.select_option("#project_id", label="Project Two")
    assert page.input_value("#desk_id") == ""
    desks = usable_options(page, "#desk_id")
    assert desks == ["Desk 2a (P2)"], desks
    assert usable_options(page, "#manager_id") == ["Agent_P2 Tester"]


def test_validation_error_keeps_what_was_typed(page, live_server, world):
    login(page, live_server, "admin")
    page.goto(f"{live_server}/clients/add")
    page.fill("#email", "not-an-email")
    page.fill("#first_name", "Grace")
    page.select_option("#project_id", label="Project One")
    with page.expect_navigation():
        page.click("#cd-save")

    assert re.search(r"/clients/add/?$", page.url), page.url
    error = page.locator("#group-email .cd-error")
    assert error.count() >= 1
    assert "valid e-mail" in error.first.inner_text()
    assert error.first.is_visible()
    assert page.input_value("#first_name") == "Grace"
    assert page.input_value("#email") == "not-an-email"


def test_stored_xss_is_inert_everywhere(page, live_server, make_client):
    cid = make_client(first_name=XSS_FIRST, last_name=XSS_LAST, description=XSS_DESC)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.context.add_init_script(CSP_PROBE)
    login(page, live_server, "admin")

    for path in ["/clients/list/", f"/clients/show/{cid}", f"/clients/edit/{cid}", f"/clients/show/{cid}?tab=logs",
                 "/clients/list/?q=script"]:
        page.goto(f"{live_server}{path}")
        page.wait_for_load_state("load")
        assert page.evaluate("window.__x") is None, path
        assert page.evaluate("window.__csp") == [], path  # nothing needed the CSP to stop it
        assert page.locator("img[src='x']").count() == 0, path
        assert page.locator("svg[onload]").count() == 0, path
        assert not page.evaluate("Array.from(document.scripts).some(s => s.text.includes('__x'))"), path
        body = page.inner_text("body")
        if path.startswith("/clients/list"):
            assert XSS_FIRST in body, path  # shown as text in the list row
        elif path.endswith("tab=logs"):
            assert XSS_FIRST in body and XSS_LAST in body, path  # the create log shows the raw values
        elif path.startswith("/clients/show"):
            header = page.eval_on_selector("#cd-card-title", "e => e.textContent")
            assert "<script>" in header and XSS_LAST in header, header
            assert XSS_DESC in body
        else:
            assert page.input_value("#first_name") == XSS_FIRST
            assert page.input_value("#last_name") == XSS_LAST
            assert page.input_value("#description") == XSS_DESC
    assert dialogs == []


def test_search_box_is_literal(page, live_server, make_client):
    make_client(first_name="50%", last_name="Discount")
    make_client(first_name="500", last_name="Club")
    login(page, live_server, "admin")
    assert any("500 Club" in r for r in list_rows_text(page))

    page.fill("#cd-search-box", "50%")
    page.press("#cd-search-box", "Enter")
    page.wait_for_url(re.compile(r"[?&]q=50%25"))
    rows = list_rows_text(page)
    assert any("50% Discount" in r for r in rows), rows
    assert not any("500 Club" in r for r in rows), rows
    assert page.input_value("#cd-search-box") == "50%"


@pytest.mark.skipif(not os.path.exists(os.path.join(TRANSLATIONS, "es", "LC_MESSAGES", "messages.mo")),
                    reason="Spanish catalog not compiled (make translations)")
def test_language_switch_to_spanish(page, live_server, world):
    login(page, live_server, "admin")
    page.goto(f"{live_server}/lang/es")
    page.goto(f"{live_server}/clients/list/")
    assert page.inner_text(".panel-title").strip() == "Clientes"


def test_city_edit_shows_in_logs_tab(page, live_server, make_client):
    cid = make_client(city="Berlin")
    login(page, live_server, "admin")
    page.goto(f"{live_server}/clients/edit/{cid}")
    assert page.input_value("#city") == "Berlin"
    page.fill("#city", "Valencia")
    page.click("#cd-save")
    page.wait_for_url(re.compile(rf"/clients/show/{cid}$"))
    assert "Valencia" in page.inner_text(".cd-panels")

    page.click("#cd-tab-logs")
    page.wait_for_url(re.compile(r"tab=logs"))
    rows = page.locator("#cd-logs tbody tr")
    cells = [[c.strip() for c in rows.nth(i).locator("td").all_inner_texts()] for i in range(rows.count())]
    city_rows = [c for c in cells if c[3].lower() == "city"]
    assert city_rows, cells
    assert any(c[4] == "Berlin" and c[5] == "Valencia" for c in city_rows), city_rows
    assert any(c[1] == "Admin Tester" for c in city_rows), city_rows


def test_multiselect_custom_field_shows_chips_and_folds_overflow(app, world, live_server, page):
    from app.clients.models import CustomField
    from app.extensions import db
    with app.app_context():
        db.session.add(CustomField(key="langs", label="Languages", field_type="multiselect",
                                   options=["en", "es", "ru", "de", "fr"]))
        db.session.commit()
    login(page, live_server, "admin")
    page.goto(live_server + "/clients/add")
    page.select_option("#cf_langs", ["en", "es", "ru", "de", "fr"])
    chips = page.locator("#group-cf_langs .cd-chip")
    expect(chips).to_have_count(3)
    more = page.locator("#group-cf_langs .cd-chip-more")
    expect(more).to_have_text("+2 more")
    more.click()
    expect(chips).to_have_count(5)
