"""Sign-in, roles, meeting mode and the audit log in real Chromium against a real OIDC provider.

A local OpenID Connect provider (the `oidc-provider-mock` package, authorization-code flow) runs
in a thread of this process; the Streamlit server runs with a temporary secrets file whose [auth]
section points at it and a temporary roles file. Chromium signs in through the provider's own
authorize form, as a person would. Nothing here needs the internet: requests to any host other
than localhost are aborted.

Never skipped: Chromium, Playwright and oidc-provider-mock are test requirements.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from oidc_provider_mock import run_server_in_thread
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    expect,
    sync_playwright,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from alliance import audit, db, serve
from alliance.serve import CHROMIUM, CHROMIUM_ARGS
from tests.test_browser import SHOTS

pytestmark = pytest.mark.browser

DIRECTOR = "director@clinic.example"
SUPERVISOR = "north.lead@clinic.example"
VIEWER = "viewer@clinic.example"
ODD_NAME = "[Boss](https://phish.example/login)"  # an identity-provider claim that is markdown
SUPERVISED_SITE = "Northside"
DEMO_SESSIONS = 20_000  # small: every page still has enough clients, and pages compute fast
ROLES = f"""
[[rule]]
email = "{DIRECTOR}"
role = "director"

[[rule]]
email = "{SUPERVISOR}"
role = "supervisor"
sites = ["{SUPERVISED_SITE}"]

[[rule]]
email = "{VIEWER}"
role = "viewer"

[[rule]]
email = "{ODD_NAME}"
role = "viewer"
"""
THERAPIST_CODE = re.compile(r"T-[0-9A-F]{4}")
CHARTS = '[data-testid="stPlotlyChart"] .js-plotly-plot'
WAIT = 60_000  # ms; pages compute for several seconds on a busy 2-core machine
OFFLINE = re.compile(r"^(?!https?://(localhost|127\.0\.0\.1)[:/])")  # anything not local


@dataclass(frozen=True)
class Clinic:
    db: Path
    codes: frozenset[str]  # every therapist code in the demo clinic
    supervised_codes: frozenset[str]  # therapists with sessions at the supervised site


@dataclass(frozen=True)
class Servers:
    app: str
    provider: str


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Clinic:
    """A small demo clinic of its own (the audit log and settings live beside the file)."""
    path = tmp_path_factory.mktemp("auth") / "clinic.duckdb"
    db.write_demo(path, sessions=DEMO_SESSIONS)
    con = duckdb.connect(str(path), read_only=True)
    try:
        codes = {
            r[0] for r in con.execute("select distinct therapist from session_facts").fetchall()
        }
        supervised = {
            r[0]
            for r in con.execute(
                "select distinct therapist from session_facts where site = $site",
                {"site": SUPERVISED_SITE},
            ).fetchall()
        }
    finally:
        con.close()
    assert codes and all(THERAPIST_CODE.fullmatch(c) for c in codes)
    return Clinic(path, frozenset(codes), frozenset(supervised))


@pytest.fixture(scope="module")
def servers(clinic: Clinic) -> Iterator[Servers]:
    """The OIDC provider (in a thread) and the dashboard (a subprocess) configured to use it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the provider on plain http: test only
        with run_server_in_thread() as idp:
            provider = f"http://localhost:{idp.server_port}"
            port = serve.free_port()
            app = f"http://localhost:{port}"  # the redirect URI's host: the cookie's domain
            folder = clinic.db.parent
            secrets = folder / "secrets.toml"
            secrets.write_text(
                "[auth]\n"
                f'redirect_uri = "{app}/oauth2callback"\n'
                'cookie_secret = "browser-test-cookie-secret-0123456789"\n'
                'client_id = "alliance-dashboard"\n'
                'client_secret = "browser-test-client-secret"\n'
                f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
            )
            roles = folder / "roles.toml"
            roles.write_text(ROLES)
            env = {  # the dashboard itself needs no insecure-transport switch
                **{k: v for k, v in os.environ.items() if k != "AUTHLIB_INSECURE_TRANSPORT"},
                "ALLIANCE_DB": str(clinic.db),
                "ALLIANCE_ROLES": str(roles),
            }
            extra = ("--secrets.files", str(secrets))  # never ~/.streamlit or the project's
            with serve.streamlit_server(env, port=port, host="localhost", extra_args=extra):
                yield Servers(app=app, provider=provider)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is required for browser tests (make test installs it)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_context(browser: Browser) -> BrowserContext:
    """A fresh browser profile (no cookies: nobody signed in), offline."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 2200}, accept_downloads=True)
    ctx.route(OFFLINE, lambda route: route.abort())  # the provider's pages link a CDN stylesheet
    ctx.set_default_timeout(WAIT)
    return ctx


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = new_context(browser)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def director(browser: Browser, servers: Servers) -> Iterator[Page]:
    """One director signed in for the director tests (signing in costs a full page run)."""
    ctx = new_context(browser)
    yield sign_in(ctx, servers, DIRECTOR)
    ctx.close()


# --------------------------------------------------------------------------- helpers


def sign_in(context: BrowserContext, servers: Servers, email: str) -> Page:
    """The real flow: the app's Sign in button, the provider's form, back to the app."""
    page = context.new_page()
    page.goto(servers.app)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{servers.provider}/oauth2/authorize?**")
    # oidc-provider-mock's authorize form: one text field "sub"; a new subject gets the claims
    # {"email": sub}, which is what the roles file matches on
    page.fill('input[name="sub"]', email)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{servers.app}/**")
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible(timeout=WAIT)
    wait_idle(page)
    return page


def wait_idle(page: Page) -> None:
    """Wait until Streamlit has finished the current run (says what it shows if it does not)."""
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_timeout(300)  # a run an interaction asked for has begun
    status = page.locator('[data-testid="stStatusWidget"]')
    try:
        page.wait_for_function(serve.RUN_FINISHED, polling=50)
    except PlaywrightTimeoutError as exc:
        raise AssertionError(f"the app is still busy: {status.all_inner_texts()}") from exc


def navigation(page: Page) -> list[str]:
    nav = page.locator('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]')
    return [t.strip().splitlines()[-1] for t in nav.all_inner_texts()]


def go_to(page: Page, title: str) -> None:
    """Follow a sidebar link (keeps the session, unlike a new URL)."""
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
    page.wait_for_selector(f'[data-testid="stMain"] h1:has-text("{title}")')
    wait_idle(page)


def plotly_data(page: Page) -> list[dict]:
    """Every trace of every plotly chart on the page, as the browser holds it."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
                 .flatMap(el => JSON.parse(JSON.stringify(el.data || [])))"""
    )


def main_text(page: Page) -> str:
    return page.locator('[data-testid="stApp"]').inner_text()


def selectbox_options(page: Page, label: str) -> list[str]:
    combo = page.locator('[data-testid="stSidebar"]').get_by_role(
        "combobox", name=label, exact=True
    )
    combo.locator("xpath=..").get_by_role("button", name="Open").click()
    options = page.get_by_role("listbox").get_by_role("option")
    options.first.wait_for()
    texts = [t.strip() for t in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return texts


def grid_cells(grid: Locator) -> list[str]:
    """The visible cells of an st.dataframe (a canvas; its accessible table holds the text)."""
    grid.locator("table[role=grid] td").first.wait_for(state="attached")
    return [t.strip() for t in grid.locator("table[role=grid] td").all_text_contents()]


def assert_no_therapist_codes(page: Page, clinic: Clinic) -> None:
    text = main_text(page)
    charts = json.dumps(plotly_data(page))
    assert not THERAPIST_CODE.findall(text), "a therapist code is on the page"
    assert not THERAPIST_CODE.findall(charts), "a therapist code is in a chart's data"
    assert not any(code in text or code in charts for code in clinic.codes)


def assert_no_error(page: Page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


# --------------------------------------------------------------------------- sign-in and roles


def test_before_sign_in_only_the_sign_in_screen(context: BrowserContext, servers: Servers):
    page = context.new_page()
    for path in ("", "therapists", "audit?therapist=T-0000"):
        page.goto(f"{servers.app}/{path}")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT)
        wait_idle(page)
        assert page.locator(CHARTS).count() == 0
        assert page.locator('[data-testid="stMetric"]').count() == 0
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # no page names either
        text = main_text(page)
        assert "Sign in with your clinic account" in text
        assert "Demo data" not in text and "Filters" not in text
        assert_no_error(page)


def test_director_signs_in_and_sees_every_page(director: Page):
    page = director
    expect(page.get_by_text("role: director")).to_be_visible(timeout=WAIT)
    page.locator(CHARTS).first.wait_for()
    assert page.locator('[data-testid="stMetric"]').count() >= 4
    pages = navigation(page)
    for title in ("Overview", "Therapists", "Data", "Settings", "Audit log"):
        assert title in pages
    assert_no_error(page)


def test_viewer_gets_no_therapist_level_data_even_by_url(
    context: BrowserContext, servers: Servers, clinic: Clinic
):
    code = sorted(clinic.codes)[0]
    page = sign_in(context, servers, VIEWER)
    expect(page.get_by_text("role: viewer")).to_be_visible(timeout=WAIT)
    # a crafted link to a page mixing clinic- and therapist-level panels (signed in: the cookie
    # is kept across the new page load)
    page.goto(f"{servers.app}/profile?therapist={code}&show=Therapists")
    wait_idle(page)
    expect(page.locator('[data-testid="stMain"] h1', has_text="profile")).to_be_visible(
        timeout=WAIT
    )
    pages = navigation(page)
    assert "Overview" in pages and "Alliance profile" in pages
    for hidden in ("Therapists", "Data", "Audit log"):
        assert hidden not in pages
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("Ignored an unknown therapist in the link.")).to_be_visible(
        timeout=WAIT
    )
    assert sidebar.get_by_role("combobox", name="Therapist").count() == 0
    assert "therapist=" not in page.url
    page.locator(CHARTS).first.wait_for()  # clinic-level panels still work
    # the profile's Therapists section is not offered: the link opens the first section
    sections = page.get_by_role("radiogroup", name="Show").get_by_role("radio")
    assert sections.all_inner_texts() == ["Sites, programs and months", "Client background"]
    assert sections.first.get_attribute("aria-checked") == "true"
    assert_no_error(page)
    assert_no_therapist_codes(page, clinic)
    # a deep link to the therapists page (not in the navigation) shows no therapist either
    page.goto(f"{servers.app}/therapists?therapist={code}")
    wait_idle(page)
    page.locator(CHARTS).first.wait_for()
    assert page.locator('[data-testid="stMain"] h1', has_text="Therapists").count() == 0
    assert_no_error(page)
    assert_no_therapist_codes(page, clinic)


def test_stranger_is_refused_and_names_are_shown_as_text(context: BrowserContext, servers: Servers):
    page = context.new_page()
    page.goto(servers.app)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{servers.provider}/oauth2/authorize?**")
    page.fill('input[name="sub"]', "stranger@elsewhere.example")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{servers.app}/**")
    expect(page.get_by_text("Your account has no role")).to_be_visible(timeout=WAIT)
    wait_idle(page)
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    assert page.locator(CHARTS).count() == 0 and "Demo data" not in main_text(page)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{servers.provider}/oauth2/end_session?**")
    page.get_by_role("button", name="End session").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT)

    # a claim full of markdown is printed as text: no link to the phishing page
    page = sign_in(context, servers, ODD_NAME)
    assert page.locator('a[href*="phish.example"]').count() == 0
    assert_no_error(page)


def test_supervisor_sees_only_their_site(context: BrowserContext, servers: Servers, clinic: Clinic):
    page = sign_in(context, servers, SUPERVISOR)
    expect(page.get_by_text("role: supervisor")).to_be_visible(timeout=WAIT)
    assert selectbox_options(page, "Site") == ["All", SUPERVISED_SITE]
    therapists = selectbox_options(page, "Therapist")
    assert therapists[0] == "All" and set(therapists[1:]) == clinic.supervised_codes
    pages = navigation(page)
    assert "Therapists" in pages and "Data" not in pages and "Audit log" not in pages
    go_to(page, "Therapists")
    page.locator(CHARTS).first.wait_for()
    shown = set(THERAPIST_CODE.findall(json.dumps(plotly_data(page))))
    assert shown and shown <= clinic.supervised_codes
    assert_no_error(page)


# --------------------------------------------------------------------------- meeting mode


def test_meeting_mode_hides_codes(director: Page, clinic: Clinic):
    page = director
    sidebar = page.locator('[data-testid="stSidebar"]')
    therapist_filter = sidebar.locator('[data-testid="stSelectbox"]', has_text="Therapist")
    expect(therapist_filter).to_have_count(1, timeout=WAIT)
    sidebar.get_by_text("Meeting mode").click()
    wait_idle(page)
    expect(therapist_filter).to_have_count(0, timeout=WAIT)

    go_to(page, "Therapists")
    page.locator(CHARTS).first.wait_for()
    expect(sidebar.locator('[data-testid="stCheckbox"]', has_text="Meeting mode")).to_be_visible(
        timeout=WAIT
    )
    assert_no_error(page)
    traces = plotly_data(page)
    shown = {
        value
        for trace in traces
        for key in ("text", "customdata", "hovertext")
        for value in _flatten(trace.get(key))
        if isinstance(value, str)
    }
    labels = {v for v in shown if re.fullmatch(r"[A-Z]{1,2}", v)}
    assert "A" in labels and len(labels) >= 3, "therapists are shown as A, B, C…"
    page.get_by_text("Data behind this chart").first.click()  # the table under the funnel
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for()
    cells = grid_cells(grid)
    assert cells and not any(THERAPIST_CODE.search(c) for c in cells)
    assert "A" in cells and len({c for c in cells if re.fullmatch(r"[A-Z]{1,2}", c)}) >= 3
    assert_no_therapist_codes(page, clinic)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "meeting_mode.png"), full_page=True)


def _flatten(value: object) -> list[object]:
    if isinstance(value, list):
        return [v for item in value for v in _flatten(item)]
    return [value]


# --------------------------------------------------------------------------- audit log


def test_download_is_in_the_audit_log(director: Page, servers: Servers, clinic: Clinic):
    page = director
    page.goto(f"{servers.app}/?site=Riverside")
    wait_idle(page)
    page.locator(CHARTS).first.wait_for()
    button = page.locator('[data-testid="stDownloadButton"] button', has_text="CSV").first
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert len(rows) > 1
    wait_idle(page)

    go_to(page, "Audit log")
    assert_no_error(page)
    grid = page.locator('[data-testid="stDataFrame"]')
    grid.wait_for()
    log = audit.read(clinic.db)
    entry = log[log["event"] == "download_csv"].iloc[0]
    assert entry["user_name"] == DIRECTOR and entry["role"] == "director"
    detail = json.loads(entry["detail"])
    assert detail["filters"]["site"] == "Riverside" and detail["file"] == (
        download.suggested_filename
    )
    cells = " ".join(grid_cells(grid))
    for shown in (DIRECTOR, "download_csv", "site=Riverside", "from=", detail["chart"]):
        assert shown in cells
    assert entry["logged_at"].strftime("%Y-%m-%d %H:%M") in cells
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "audit_log.png"), full_page=True)


# --------------------------------------------------------------------------- sign-out (last)


def test_sign_out(director: Page, servers: Servers):
    page = director
    page.goto(servers.app)
    expect(page.get_by_text("role: director")).to_be_visible(timeout=WAIT)
    page.get_by_role("button", name="Sign out").click()
    # Streamlit ends the session at the provider too (RP-initiated logout); the mock asks first
    page.wait_for_url(f"{servers.provider}/oauth2/end_session?**")
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(f"{servers.app}/**")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT)
    assert page.locator(CHARTS).count() == 0
    page.goto(servers.app)  # the sign-in cookie is gone, not just this tab's state
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT)
    wait_idle(page)
    assert page.locator(CHARTS).count() == 0
    assert "Signed in as" not in main_text(page)
