"""Issue 19, findings 7 and 8 and the file modes of finding 9: roles that cannot be applied are
refused at start, the audit log fails closed (and quickly), every export path is audited or
removed, and the files the dashboard writes are its owner's only.

Everything runs on real DuckDB files; the app through AppTest (the real dashboard.py frame).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from alliance import access, audit, cli, db, exports, pseudonym, report, ui
from alliance.filters import Filters
from alliance.settings import Settings
from tests.conftest import ROOT
from tests.test_access import AUTH

SUPERVISOR = {"is_logged_in": True, "email": "s@clinic.example", "groups": ["north-supervisors"]}
RULES_HEAD = """
[[rule]]
email = "director@clinic.example"
role = "director"

"""
NO_SITES = {
    "empty list": '[[rule]]\ngroup = "north-supervisors"\nrole = "supervisor"\nsites = []\n',
    "no sites key": '[[rule]]\ngroup = "north-supervisors"\nrole = "supervisor"\n',
}
CLASS_NAMES = ("Error", "Exception", "Traceback")  # no exception class name reaches a person


def _app(roles_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: dict) -> AppTest:
    roles = tmp_path / "roles.toml"
    roles.write_text(roles_text)
    monkeypatch.setenv("ALLIANCE_ROLES", str(roles))
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
    at.secrets["auth"] = AUTH
    at.user = user
    return at


def _plain(text: str) -> None:
    assert not any(name in text for name in CLASS_NAMES), text


# --------------------------------------------------------------------------- roles (finding 7)


@pytest.mark.parametrize("how", list(NO_SITES))
@pytest.mark.parametrize("signed_in", [False, True])
def test_a_supervisor_rule_without_sites_is_refused_at_start(
    app_env, tmp_path, monkeypatch, how, signed_in
):
    user = SUPERVISOR if signed_in else {"is_logged_in": False}
    at = _app(RULES_HEAD + NO_SITES[how], tmp_path, monkeypatch, user).run()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    # names the rule (its number and group) and says what a supervisor needs
    assert "rule 2" in message and "north-supervisors" in message, message
    assert "supervisor needs a non-empty list of sites" in message, message
    _plain(message)
    assert not at.metric and not at.get("plotly_chart")
    assert "Sign in" not in [b.label for b in at.button]  # refused before anyone signs in
    assert not at.selectbox  # no filters, no pages


def test_a_default_supervisor_without_sites_is_refused_by_name(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text(RULES_HEAD + '[default]\nrole = "supervisor"\n')
    with pytest.raises(access.RolesError, match=r"the \[default\] rule .*non-empty list of sites"):
        access.load_rules(path)
    path.write_text(RULES_HEAD + '[[rule]]\nemail = "x@y"\nrole = "supervisor"\nsites = "North"\n')
    with pytest.raises(access.RolesError, match=r'rule 2 \(email "x@y"\)'):
        access.load_rules(path)  # a string, not a list: would have been read letter by letter


def test_a_supervisor_without_sites_sees_no_site_not_every_site(demo_db, monkeypatch):
    """Below the start-up check: 'no site' stays 'no site' all the way into the queries (the
    frame turned an empty tuple into None, i.e. every site)."""
    monkeypatch.setenv("ALLIANCE_DB", str(demo_db))
    role = access.make_role("supervisor", [])
    assert role.allowed_sites == []
    options = ui._filter_options.__wrapped__("no-cache", tuple(role.allowed_sites))
    assert options.values.get("site", []) == [] and options.first_month is None
    seen = ui._cached_view.__wrapped__(
        "probe",
        "no-cache",
        Filters(first_month=dt.date(2025, 11, 1), last_month=dt.date(2026, 10, 1)),
        Settings(),
        (),
        True,
        False,
        lambda ctx: ctx.allowed_sites,
    )
    assert seen == []


def test_a_supervisor_whose_sites_hold_no_data_sees_a_plain_screen(app_env, tmp_path, monkeypatch):
    rules = RULES_HEAD + NO_SITES["empty list"].replace("sites = []", 'sites = ["Nowhere"]')
    at = _app(rules, tmp_path, monkeypatch, SUPERVISOR).run()
    assert not at.exception
    assert any("no site with data" in w.value for w in at.warning)
    assert not at.metric and not at.get("plotly_chart")


# --------------------------------------------------------------------------- audit (finding 8)


@pytest.fixture
def audit_db(tmp_path: Path) -> Path:
    """A database path whose audit log exists (one entry), in a folder of its own."""
    path = tmp_path / "clinic" / "alliance.duckdb"
    audit.record(path, user="d@c", role="director", sites=None, event="probe", detail={})
    return path


@pytest.fixture
def locked(audit_db: Path) -> Iterator[Path]:
    """Another program holds the audit log open (DuckDB's own file lock), as a person with the
    DuckDB shell would."""
    holder = _hold_open(audit_db)
    try:
        yield audit_db
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def lock_file_held(audit_db: Path) -> Iterator[Path]:
    """Another writer holds the audit log's lock file and does not let go."""
    lock = audit.audit_path(audit_db).with_name(audit.audit_path(audit_db).name + ".lock")
    code = (
        "import fcntl, sys, time\n"
        "fh = open(sys.argv[1], 'a')\n"
        "fcntl.flock(fh, fcntl.LOCK_EX)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield audit_db
    finally:
        holder.kill()
        holder.wait()


def _timed_record(path: Path) -> tuple[float, BaseException | None]:
    """record() in a thread: (seconds taken, what it raised); a hang fails after 20 s."""
    outcome: list[BaseException | None] = [None]

    def run() -> None:
        try:
            audit.record(path, user="u", role="viewer", sites=None, event="x", detail={})
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome[0] = exc

    started = time.perf_counter()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "the audit write hung on a locked log"
    return time.perf_counter() - started, outcome[0]


@pytest.mark.parametrize("lock", ["locked", "lock_file_held"])
def test_a_locked_audit_log_refuses_within_a_few_seconds_in_a_plain_sentence(request, lock):
    path = request.getfixturevalue(lock)
    took, raised = _timed_record(path)
    assert isinstance(raised, audit.AuditError), raised
    assert took < audit.WAIT_S + 2.0, took
    message = audit.not_written(raised)
    assert "could not record this download" in message and "not delivered" in message
    _plain(message)


def test_a_download_is_not_built_when_its_entry_cannot_be_written(locked):
    built = []
    outcome = audit.Outcome()

    def build() -> bytes:
        built.append(1)
        return b"the chart"

    def entry() -> None:
        audit.record(locked, user="u", role="viewer", sites=None, event="download_png", detail={})

    deliver = audit.guarded(build, entry, outcome)
    with pytest.raises(audit.AuditError):
        deliver()
    assert built == []  # nothing was built, so nothing can be delivered
    message = outcome.wait_for_next(0)
    assert message and "was not delivered" in message
    _plain(message)
    assert list(audit.read(locked.with_name("other.duckdb"))["event"]) == []


def test_the_download_clicked_callback_keeps_the_reason_to_show(locked):
    outcome = audit.Outcome()
    deliver = audit.guarded(
        lambda: b"x",
        lambda: audit.record(locked, user="u", role="r", sites=None, event="e", detail={}),
        outcome,
    )
    worker = threading.Thread(target=lambda: pytest.raises(audit.AuditError, deliver))
    worker.start()  # as Streamlit does: the data callable in its own thread, the click's
    ui.download_clicked(outcome, "probe_refused")  # callback in the page's rerun
    worker.join()
    assert "not delivered" in st.session_state["probe_refused"]


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[object, str]]:
    """{file name: (data callable, file name)} of every deferred download the app registered:
    the callables the server runs when a Download button is clicked."""
    found: dict[str, tuple[object, str]] = {}
    original = MediaFileManager.add_deferred

    def add_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        found[file_name] = (data_callable, file_name)
        return original(self, data_callable, mimetype, coordinates, file_name=file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return found


def _app_on_copy(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo clinic copied to a folder of its own (its own audit log)."""
    path = tmp_path / "copy" / "alliance.duckdb"
    path.parent.mkdir()
    path.write_bytes(app_env.read_bytes())
    monkeypatch.setenv("ALLIANCE_DB", str(path))
    return path


def test_a_chart_download_records_user_role_and_sites_before_delivering(
    app_env, tmp_path, monkeypatch, deferred
):
    path = _app_on_copy(app_env, tmp_path, monkeypatch)
    rules = RULES_HEAD + NO_SITES["empty list"].replace("sites = []", 'sites = ["Northside"]')
    at = _app(rules, tmp_path, monkeypatch, SUPERVISOR).run()
    assert not at.exception
    csv_name = next(name for name in deferred if name.endswith(".csv"))
    data = deferred[csv_name][0]()
    assert data  # delivered, and recorded first
    log = audit.read(path)
    entry = log.iloc[0]
    assert (entry["user_name"], entry["role"], entry["event"]) == (
        "s@clinic.example",
        "supervisor",
        "download_csv",
    )
    assert json.loads(entry["sites"]) == ["Northside"]
    assert json.loads(entry["detail"])["file"] == csv_name
    assert audit.readable(log)["sites"].iloc[0] == "Northside"


def test_with_the_audit_log_locked_no_chart_download_is_delivered(
    app_env, tmp_path, monkeypatch, deferred
):
    path = _app_on_copy(app_env, tmp_path, monkeypatch)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    assert not at.exception and deferred
    audit.record(path, user="x", role="local", sites=None, event="probe", detail={})
    holder = _hold_open(path)
    try:
        for name, (data_callable, _) in list(deferred.items())[:3]:
            started = time.perf_counter()
            with pytest.raises(audit.AuditError):
                data_callable()
            assert time.perf_counter() - started < audit.WAIT_S + 2.0, name
    finally:
        holder.kill()
        holder.wait()


def test_no_export_bypasses_the_audit_log_camera_button_and_table_toolbar(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert charts
    for chart in charts:
        config = json.loads(chart.proto.config)
        assert "toImage" in config.get("modeBarButtonsToRemove", []), config
    # Streamlit's own "Download as CSV" in every table's toolbar: hidden for the whole app
    assert st.get_option("client.disableDataExport") is True


def test_the_audit_log_page_says_plainly_when_the_log_is_locked(app_env, tmp_path, monkeypatch):
    path = _app_on_copy(app_env, tmp_path, monkeypatch)
    audit.record(path, user="x", role="local", sites=None, event="probe", detail={})
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    holder = _hold_open(path)
    try:
        started = time.perf_counter()
        at.switch_page("pages/audit.py").run()
        took = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert "cannot be opened just now" in message
    _plain(message)
    assert took < 15, took


def _hold_open(path: Path) -> subprocess.Popen:
    """Another program holding the audit log open (DuckDB's file lock) until killed."""
    code = "import duckdb,sys,time\nc=duckdb.connect(sys.argv[1])\nprint('ready',flush=True)\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", code + "time.sleep(120)\n", str(audit.audit_path(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


def _quick_build(ctx, fmt, selection=None, **_kw):  # drawing is tested in test_report
    meta = exports.export_meta(ctx)
    return b"a pack", report.Pack(meta=meta, settings=ctx.settings, charts=[])


def test_the_report_page_offers_no_pack_the_log_cannot_record(
    app_env, tmp_path, monkeypatch, deferred
):
    path = _app_on_copy(app_env, tmp_path, monkeypatch)
    audit.record(path, user="x", role="local", sites=None, event="probe", detail={})
    monkeypatch.setattr(report, "build", _quick_build)
    monkeypatch.setattr(exports, "ensure_server", lambda: None)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.switch_page("pages/reports.py").run()
    at.multiselect(key="rp_sections").set_value(["overview"]).run()
    holder = _hold_open(path)
    try:
        next(b for b in at.button if b.label.startswith("Build the")).click().run()
    finally:
        holder.kill()
        holder.wait()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert "could not record this export" in message and "not delivered" in message
    _plain(message)
    assert not at.get("download_button")  # nothing offered

    next(b for b in at.button if b.label.startswith("Build the")).click().run()
    assert not at.exception and at.get("download_button")
    pack = next(v for k, v in deferred.items() if k.startswith("qi-pack"))
    assert pack[0]() == b"a pack"
    assert list(audit.read(path)["event"])[:2] == ["download_report_pptx", "report_pptx"]


def test_report_command_is_audited_with_the_os_user(demo_db, tmp_path, monkeypatch, capsys):
    """`python -m alliance report` records the operating-system user, role 'command line' and
    all sites before it writes the file; with the log locked it writes nothing (exit 1)."""
    path = tmp_path / "alliance.duckdb"
    path.write_bytes(demo_db.read_bytes())

    monkeypatch.setattr(report, "build", _quick_build)
    monkeypatch.setattr(report.exports, "ensure_server", lambda: None)
    out = tmp_path / "pack.pptx"
    args = ["report", "--db", str(path), "--out", str(out), "--site", "Riverside"]
    code = cli.main(args)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    log = audit.read(path)
    entry = log.iloc[0]
    assert entry["user_name"] == getpass.getuser()
    assert entry["role"] == "command line" and entry["sites"] == "all sites"
    assert entry["event"] == "report_pptx"
    detail = json.loads(entry["detail"])
    assert detail["file"] == "pack.pptx" and detail["filters"]["site"] == "Riverside"

    out.unlink()
    holder = _hold_open(path)
    try:
        assert cli.main(args) == 1
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert "could not record this report" in err and "not written" in err
    _plain(err.replace("error: ", ""))
    assert not out.exists()


# --------------------------------------------------------------------------- file modes (9)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask (as on many servers): the modes must not depend on it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_database_audit_settings_and_key_files_are_owner_only(tmp_path, monkeypatch, open_umask):
    monkeypatch.delenv(pseudonym.ENV_VAR, raising=False)
    path = tmp_path / "new" / "data" / "alliance.duckdb"
    db.write_demo(path, sessions=500, seed=3)  # the demo build, into folders it creates
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    assert _mode(path.with_name(path.name + ".lock")) == 0o600

    audit.record(path, user="u", role="director", sites=None, event="x", detail={})
    log = audit.audit_path(path)
    assert _mode(log) == 0o600 and _mode(log.with_name(log.name + ".lock")) == 0o600

    settings_file = path.with_name(path.stem + ".settings.json")
    Settings(clinic_name="Lakeside").save(settings_file)
    assert _mode(settings_file) == 0o600
    assert Settings.load(settings_file).clinic_name == "Lakeside"

    key = pseudonym.load_key(tmp_path / "keys" / "alliance.duckdb")
    assert key.path is not None and _mode(key.path) == 0o600 and _mode(key.path.parent) == 0o700


def test_a_rewrite_leaves_the_database_owner_only_even_if_it_was_not(tmp_path, open_umask):
    """An import or a facts refresh writes a copy and swaps it in with os.replace: the file
    that results is 0600, also when an earlier version had left it world-readable."""
    path = tmp_path / "alliance.duckdb"
    db.write_demo(path, sessions=500, seed=3)
    os.chmod(path, 0o644)
    seen = []
    with db.writer(path) as con:  # the path every import and refresh goes through
        tmp = Path(con.execute("select path from duckdb_databases() where internal = false")
                   .fetchall()[0][0])  # fmt: skip
        seen.append(_mode(tmp))  # the copy, before anything is written to it
        db.set_meta(con, "probe", "1")
    assert seen == [0o600]
    assert _mode(path) == 0o600
    con = db.open_read_only(path)
    try:
        assert db.get_meta(con)["probe"] == "1"
    finally:
        con.close()


def test_settings_saved_from_the_settings_page_are_owner_only(app_env, tmp_path, monkeypatch):
    path = _app_on_copy(app_env, tmp_path, monkeypatch)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    assert not at.exception
    ui.save_settings(Settings(clinic_name="Lakeside"))
    saved = path.with_name(path.stem + ".settings.json")
    assert _mode(saved) == 0o600
    assert not list(saved.parent.glob("*.tmp*"))


def test_a_read_only_audit_folder_refuses_plainly(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere: a read-only file system stands in for it
        path = Path("/proc/alliance.duckdb")
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        path = folder / "alliance.duckdb"
    took, raised = _timed_record(path)
    assert isinstance(raised, audit.AuditError), raised
    _plain(audit.not_written(raised))


def test_old_audit_logs_gain_the_sites_column(tmp_path):
    path = tmp_path / "alliance.duckdb"
    con = duckdb.connect(str(audit.audit_path(path)))
    con.execute(
        "create table audit_log (logged_at timestamp not null, user_name varchar not null, "
        "role varchar not null, event varchar not null, detail varchar not null)"
    )
    con.execute("insert into audit_log values (now(), 'a', 'director', 'old', '{}')")
    con.close()
    os.chmod(audit.audit_path(path), 0o644)  # as earlier versions left it
    audit.record(path, user="b", role="supervisor", sites=["North"], event="new", detail={})
    shown = audit.readable(audit.read(path)).set_index("event")["sites"]
    assert shown.to_dict() == {"new": "North", "old": "not recorded"}
    assert _mode(audit.audit_path(path)) == 0o600


# --------------------------------------------------------------------------- in Chromium

CHART_CSV = '[data-testid="stDownloadButton"] button'


@pytest.mark.browser
def test_in_chromium_no_camera_no_table_download_and_a_locked_log_delivers_nothing(
    demo_db, tmp_path
):
    """What a person sees: no camera button on the charts, no download in the tables' toolbar,
    and with the audit log locked a chart's CSV is not delivered and the page says why."""
    from playwright.sync_api import sync_playwright

    from alliance import serve
    from tests.test_browser import wait_idle

    path = tmp_path / "browser" / "alliance.duckdb"
    path.parent.mkdir()
    path.write_bytes(demo_db.read_bytes())
    audit.record(path, user="x", role="local", sites=None, event="probe", detail={})
    env = {**os.environ, "ALLIANCE_DB": str(path)}
    with (
        serve.streamlit_server(env) as url,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=serve.CHROMIUM, headless=True, args=serve.CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1500, "height": 2600}, accept_downloads=True)
        page.goto(url)
        wait_idle(page)
        chart = page.locator(".js-plotly-plot").first
        chart.hover()
        page.wait_for_selector(".modebar-btn", state="attached")
        titles = page.locator(".modebar-btn").evaluate_all(
            "els => els.map(e => e.getAttribute('data-title'))"
        )
        assert titles and not any("png" in (t or "").lower() for t in titles), titles

        page.get_by_text("Data behind this chart").first.click()
        table = page.locator('[data-testid="stDataFrame"]').first
        table.wait_for()
        table.hover()
        page.wait_for_selector('[data-testid="stElementToolbar"] button', state="attached")
        toolbar = page.locator('[data-testid="stElementToolbar"] button').evaluate_all(
            "els => els.map(e => e.getAttribute('aria-label') || e.textContent)"
        )
        assert toolbar and not any("download" in (t or "").lower() for t in toolbar), toolbar

        button = page.locator(CHART_CSV, has_text="CSV").first
        holder = _hold_open(path)
        downloads: list[object] = []
        page.on("download", lambda d: downloads.append(d))
        try:
            started = time.perf_counter()
            button.click()
            refused = page.get_by_text("was not delivered").first
            refused.wait_for(timeout=15_000)
            took = time.perf_counter() - started
            page.wait_for_timeout(1000)
            assert downloads == []
            assert took < 10, took
            shown = refused.inner_text()
            assert "could not record this download" in shown
            _plain(shown)
        finally:
            holder.kill()
            holder.wait()
        wait_idle(page)
        with page.expect_download(timeout=30_000) as info:
            page.locator(CHART_CSV, has_text="CSV").first.click()
        assert info.value.suggested_filename.endswith(".csv")
        browser.close()
    log = audit.read(path)
    assert list(log["event"]).count("download_csv") == 1  # the delivered one only
    assert log[log["event"] == "download_csv"]["sites"].iloc[0] == "all sites"
