"""The thin Streamlit layer: connection, global filters, and laying out a View.

The only module of the package that imports streamlit. Text that came from imported files (site,
program, group names) is only ever passed to widgets and charts as data, never as markdown/HTML:
where a caption, message or tile names it (a chart's reading), it goes through
`views.common.markdown_safe` first; a whole line of it (the filters in force) is `st.text`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import duckdb
import pandas as pd
import streamlit as st

from alliance import access, charts, db, faults, queries
from alliance import audit as audit_log
from alliance.charts import screen_margins
from alliance.filters import (
    FILTER_LABELS,
    FilterOptions,
    Filters,
    default_filters,
    from_query_params,
    parse_month,
)
from alliance.panel import Context, Panel, View
from alliance.privacy import display_table
from alliance.settings import ALLIANCE_MEASURES, MEASURES, Settings
from alliance.views.common import markdown_safe

# importing streamlit makes its own plotly theme the process default: the house template is the
# default again, whichever was imported first (the figures, and the exports drawn from them, use it)
charts.register_template()


# --- frame ----------------------------------------------------------------------------------------
def frame_guard() -> None:
    """First line of every page: make sure the page runs inside dashboard.py's frame.

    Because the pages live in pages/, Streamlit starts in its legacy multipage mode until the
    entry script has called st.navigation once. If a server's very first request is a deep link
    (e.g. /outcomes), the page would run alone, without sign-in and filters. Switch the legacy
    mode off and rerun: the rerun goes through dashboard.py, which then runs this page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_FROZEN_AT_MODULES = 0


def freeze_long_lived_objects() -> None:
    """Last line of the frame: after a run that imported new modules, move every object alive
    now out of the cyclic garbage collector's reach (gc.freeze).

    Streamlit collects garbage after every run (runner.postScriptGC, to keep memory down), and a
    full collection walks every tracked object, about 220,000 of them once the pages are
    imported (modules, classes, plotly's validators): 0.13-0.22 s a run on this machine, holding
    the interpreter lock while the run's last elements wait to be sent. What is alive at the
    end of a run, after a collection, is almost all for the life of the process, so later
    collections need only walk what runs create (3-4 ms). It happens again only when a run has
    imported more modules (a page visited for the first time), each time unfreezing first so
    that whatever has died since is collected. Reference counting still frees frozen objects;
    garbage in reference cycles (a plotly figure) that was alive at the last freeze, such as
    another session's run in progress, stays allocated until the next one.
    """
    import gc
    import sys

    global _FROZEN_AT_MODULES
    if len(sys.modules) == _FROZEN_AT_MODULES:
        return
    gc.unfreeze()  # what died since the last freeze (other sessions' runs) is collected now
    gc.collect()
    gc.freeze()
    _FROZEN_AT_MODULES = len(sys.modules)


# --- data ---------------------------------------------------------------------------------------
def db_path() -> Path:
    return db.default_db_path()


# files (path, signature) whose derived facts this process has found current: every run asks,
# and opening the file to read its version costs 25-80 ms a run at 10 M sessions
_FACTS_CURRENT: set[tuple[str, tuple[int, int, int]]] = set()
# files (path, signature) found damaged while a page read them: the next run shows the problem
_DAMAGED: dict[tuple[str, tuple[int, int, int]], faults.Fault] = {}
# databases whose folder this process has swept of killed writes' leftovers, and what it said
_SWEPT: dict[str, str] = {}
# database faults: the file itself cannot be used (every page would fail the same way)
DATABASE_CASES = frozenset({"damaged", "folder", "not_database", "unreadable", "version"})


def ensure_database() -> None:
    """Build the demo clinic (with visible progress) if no database exists yet; rebuild the
    derived facts of an existing one that an earlier version built.

    A database that cannot be used (damaged, a folder, not a DuckDB file, unreadable) or a
    first start that cannot write shows one page that says so in a plain sentence, instead of
    every page failing; the server log records the cause. The first run of the process sweeps
    what killed imports left beside the database and says what it removed."""
    faults.server_log()
    path = db_path()
    if str(path) not in _SWEPT:
        _SWEPT[str(path)] = faults.removed_sentence(db.sweep_leftovers(path))
        if _SWEPT[str(path)]:
            st.session_state["swept_note"] = _SWEPT[str(path)]
    try:
        _ensure_database(path)
    except (duckdb.Error, OSError) as exc:
        action = "update of the derived facts" if path.exists() else "first start"
        fault = faults.database_fault(exc, path) or faults.write_fault(
            exc, path=path, action=action
        )
        database_problem(faults.record(fault, exc))


def _ensure_database(path: Path) -> None:
    if path.exists() or path.is_symlink():
        # the signature before the check: a file swapped in meanwhile is checked on its own
        known = (str(path), db.file_signature(path))
        if known in _DAMAGED:
            database_problem(_DAMAGED[known])
        if known in _FACTS_CURRENT:
            return
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if db.facts_are_current(path):
            _FACTS_CURRENT.add(known)
        else:
            # an upgrade changed the derived facts (new rollups): rebuild them from the base
            # tables once, so pages never query a table the file does not have yet (the
            # rebuilt file is a new one: the next run checks it)
            with st.spinner("Updating the derived facts for this version of the dashboard…"):
                db.refresh_facts(path)
        return
    with st.status("First start: building the demo clinic…", expanded=True) as status:
        bar = st.progress(0.0, text="Starting")
        db.write_demo(path, progress=lambda f, m: bar.progress(min(f, 1.0), text=m))
        status.update(label="Demo clinic ready", state="complete", expanded=False)


def database_problem(fault: faults.Fault) -> None:
    """The app's only page: what is wrong with the database and what to do. Stops the run."""
    _only_page(functools.partial(_database_problem_screen, fault), "Database problem")


def _database_problem_screen(fault: faults.Fault) -> None:
    st.title("Alliance dashboard", anchor=False)
    st.warning(markdown_safe(fault.text), icon=":material/database:")
    st.caption(
        "Nothing was changed. The dashboard shows its pages again on the next visit once the "
        "database can be read (or, with no database file at all, after building the demo clinic)."
    )


@contextlib.contextmanager
def database_guard() -> Iterator[None]:
    """Around a whole run: a page that finds the database file damaged (a block whose checksum
    fails is noticed only when a query reads it) shows the one explanatory page instead."""
    try:
        yield
    except duckdb.Error as exc:
        path = db_path()
        fault = faults.database_fault(exc, path)
        if fault is None or fault.case not in DATABASE_CASES:
            raise  # not the file's fault: a programming error stays visible
        faults.record(fault, exc)
        with contextlib.suppress(OSError):  # gone meanwhile: the next run looks again
            _DAMAGED[(str(path), db.file_signature(path))] = fault
        st.rerun()  # a clean run: ensure_database shows the one page (nothing half-drawn)


@st.cache_resource(max_entries=2)
def _connection(path: str, signature: tuple[int, int, int]) -> duckdb.DuckDBPyConnection:
    return db.open_read_only(Path(path))


def connection() -> duckdb.DuckDBPyConnection:
    """A read-only connection to the current database file, reopened when a writer swaps it."""
    path = db_path()
    return _connection(str(path), db.file_signature(path))


@st.cache_resource(max_entries=2, show_spinner=False)
def _meta(path: str, signature: tuple[int, int, int]) -> dict[str, str]:
    # a file's meta table changes only when a writer swaps in a new file (a new signature)
    return db.get_meta(_connection(path, signature))


def meta() -> dict[str, str]:
    """The current file's meta table (through date, data version, dataset kind): read once per
    file, not by every chart of every run. A copy: callers may change it."""
    path = db_path()
    return dict(_meta(str(path), db.file_signature(path)))


def data_version() -> str:
    return meta().get("data_version", "")


@st.cache_data(ttl=3600, max_entries=16, show_spinner=False)
def _filter_options(version: str, allowed: tuple[str, ...] | None) -> FilterOptions:
    df = queries.run(
        connection(),
        "filter_options",
        allowed_sites=list(allowed) if allowed is not None else None,  # (): no site, not all
    )
    months = sorted(df.loc[df["dimension"] == "month", "value"])
    values = {
        dim: sorted(part["value"].tolist())
        for dim, part in df[df["dimension"] != "month"].groupby("dimension")
    }
    first = pd.Timestamp(months[0]).date() if months else None
    last = pd.Timestamp(months[-1]).date() if months else None
    return FilterOptions(first_month=first, last_month=last, values=values)


def filter_options() -> FilterOptions:
    """Options the signed-in role may choose from (a viewer gets no therapist codes)."""
    allowed = st.session_state.get("allowed_sites")
    options = _filter_options(data_version(), tuple(allowed) if allowed is not None else None)
    if not st.session_state.get("therapist_level", True):
        values = {k: v for k, v in options.values.items() if k != "therapist"}
        options = dataclasses.replace(options, values=values)
    return options


def settings_path() -> Path:
    """Clinic-wide settings live beside the database (they define every number shown)."""
    path = db_path()
    return path.with_name(path.stem + ".settings.json")


@st.cache_data(ttl=60, max_entries=4, show_spinner=False)
def _load_settings(path: str, mtime_ns: int) -> tuple[Settings, str]:
    """The settings in force and, when the file could not be used as it is, the sentence that
    says so (its unusable values are replaced by their defaults; the server log records it)."""
    settings_, found = Settings.read(Path(path))
    if not found:
        return settings_, ""
    fault = faults.settings_fault(Path(path), "; ".join(found.values()))
    return settings_, faults.record(fault).text


def _settings_state() -> tuple[Settings, str]:
    path = settings_path()
    try:
        mtime = path.stat().st_mtime_ns if path.exists() else 0
    except OSError:
        mtime = -1
    return _load_settings(str(path), mtime)


def settings() -> Settings:
    """The settings in force: the file's, with a default for any value that cannot be used."""
    return _settings_state()[0]


def settings_problem() -> str:
    """Why the settings file could not be used as it is ('' when it could)."""
    return _settings_state()[1]


def save_settings(new: Settings) -> None:
    """Save atomically, owner-only (0600); SettingsError (a plain sentence) for a value that
    cannot be used, and then nothing is written."""
    new.save(settings_path())


# --- sign-in, roles, audit ---------------------------------------------------------------------
def _auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def sign_in() -> access.Role:
    """Guard every page: with an [auth] section in secrets, require sign-in and a role.

    Without auth configured the app runs in local single-user mode and says so on every page.
    """
    state = st.session_state
    if not _auth_configured():
        role, user = access.LOCAL, "local user"
        state["auth_mode_text"] = (
            "Local single-user mode: no sign-in is configured, so anyone who can open this "
            "address sees everything. See the README, section Sign-in, to configure it."
        )
    else:
        try:  # checked before anyone signs in: a roles file that cannot be applied stops here
            rules = access.load_rules()
        except access.RolesError as exc:
            print(f"Alliance dashboard not started: {exc}", file=sys.stderr, flush=True)
            _only_page(functools.partial(_roles_refused_screen, str(exc)), "Not started")
        if not st.user.is_logged_in:
            _only_page(_sign_in_screen)
        user = str(st.user.get("email") or st.user.get("sub") or "unknown")
        role = access.resolve_role(st.user.to_dict(), rules)
        if role is None:
            _only_page(_no_role_screen)
        state["auth_mode_text"] = f"Signed in as {_literal(user)} · role: {role.name}"
        st.sidebar.button("Sign out", on_click=st.logout)
    state["role"] = role
    state["user_name"] = user
    state["allowed_sites"] = role.allowed_sites
    state["therapist_level"] = role.therapist_level
    return role


def _sign_in_screen() -> None:
    st.title("Alliance dashboard", anchor=False)
    st.write("Sign in with your clinic account to see the dashboard.")
    st.button("Sign in", type="primary", on_click=st.login)


def _no_role_screen() -> None:
    st.error("Your account has no role in this dashboard. Ask a clinical director.")
    st.button("Sign out", on_click=st.logout)


def require_visible_data() -> None:
    """A role that sees no session at all (a supervisor whose sites hold no data) gets a plain
    screen and no pages, rather than empty filters. Importers go on: the Data page is theirs."""
    if can("import") or filter_options().first_month is not None:
        return
    _only_page(_no_site_screen, "No data")


def _no_site_screen() -> None:
    st.title("Alliance dashboard", anchor=False)
    st.warning(
        "Your role shows no site with data in this dashboard, so there is nothing to show. "
        "Ask a clinical director to check which sites your role covers.",
        icon=":material/lock:",
    )
    if _auth_configured():
        st.button("Sign out", on_click=st.logout)


def _roles_refused_screen(message: str) -> None:
    st.title("Alliance dashboard", anchor=False)
    st.error(
        "The dashboard is not started: its roles file needs a correction. "
        + markdown_safe(message),
        icon=":material/block:",
    )


def _only_page(screen: Callable[[], None], title: str = "Sign in") -> None:
    """Show one screen as the app's only page, then stop.

    Registering it with st.navigation matters: until the entry script has called st.navigation,
    Streamlit lists every file in pages/ in the sidebar (its legacy multipage mode), which would
    show page names to someone who is not signed in.
    """
    st.navigation([st.Page(screen, title=title, url_path="signin")], position="hidden").run()
    st.stop()


def _literal(text: str) -> str:
    """Text from the identity provider as a markdown code span: shown as typed, never a link.

    (Backslash escapes are not enough: markdown still turns a bare URL or e-mail into a link.)
    """
    text = " ".join(text.split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def role() -> access.Role:
    return st.session_state.get("role", access.LOCAL)


def can(permission: str) -> bool:
    """import, edit_settings, view_audit, export."""
    return bool(getattr(role(), f"can_{permission}"))


THERAPIST_PAGES = frozenset({"therapists"})  # pages that are therapist-level as a whole


def page_allowed(name: str) -> bool:
    """Whether the role sees the page in the navigation (a viewer: no therapist-level page)."""
    if name in THERAPIST_PAGES and not role().therapist_level:
        return False
    needs = {"data": "import", "audit": "view_audit"}
    return name not in needs or can(needs[name])


def audit_identity() -> dict[str, object]:
    """Who an audit entry names: the user, the role and the role's site restriction (None:
    all sites). Read in the page's run: download callables run in another thread."""
    current = role()
    return {
        "user": st.session_state.get("user_name", "local user"),
        "role": current.name,
        "sites": current.allowed_sites,
    }


# entries written after the fact (the change is made): what the person is told if they fail
_DONE_UNRECORDED = {
    "import": "the import itself is done",
    "settings_changed": "the settings are saved",
}


def audit(event: str, detail: dict) -> bool:
    """Record an export, download, import or settings change (never client data).

    Returns False, having said why on the page in a plain sentence, when the entry could not
    be written (the audit log locked or unwritable): the caller must then withhold the export.
    """
    payload = {**detail}
    if "filters" not in payload:
        try:
            payload["filters"] = current_filters().to_query_params()
        except (KeyError, TypeError, ValueError):  # e.g. in a callback before the sidebar ran
            payload["filters"] = {}
    try:
        audit_log.record(db_path(), **audit_identity(), event=event, detail=payload)
    except audit_log.AuditError as exc:
        if event in _DONE_UNRECORDED:
            st.error(
                f"The audit log could not record this change ({exc}); "
                f"{_DONE_UNRECORDED[event]}. Ask the person who runs the dashboard to check "
                "the audit log file.",
                icon=":material/lock:",
            )
        else:
            st.error(audit_log.not_written(exc, "export"), icon=":material/lock:")
        return False
    return True


def meeting_mode_toggle() -> bool:
    """Meeting mode: therapist codes become A, B, C… per view and the therapist filter hides."""
    return st.sidebar.toggle(
        "Meeting mode",
        key="meeting_mode",
        help="For presenting to a room: therapists are shown as A, B, C… (assigned per chart, "
        "carrying no identity) and the therapist filter is hidden.",
    )


# --- global filters -----------------------------------------------------------------------------
ALL = "All"


def _months(options: FilterOptions) -> list[str]:
    out = []
    m = options.first_month
    while m <= options.last_month:
        out.append(m.strftime("%Y-%m"))
        m = (pd.Timestamp(m) + pd.offsets.MonthBegin(1)).date()
    return out


def sidebar_filters(options: FilterOptions) -> Filters:
    """The global filter sidebar, initialised from (and mirrored to) the URL query string."""
    state = st.session_state
    if "f_init" not in state:
        initial, notices = from_query_params(st.query_params.to_dict(), options)
        state["f_init"] = True
        state["f_notices"] = notices
        state["f_period"] = (
            initial.first_month.strftime("%Y-%m"),
            initial.last_month.strftime("%Y-%m"),
        )
        for name in FILTER_LABELS:
            state[f"f_{name}"] = getattr(initial, name) or ALL
        state["f_alliance"] = initial.alliance_measure
        state["f_outcome"] = initial.outcome_measure
    for name, value in state.pop("f_pending", {}).items():
        state[f"f_{name}"] = value
    for notice in state.get("f_notices", []):
        st.sidebar.warning(notice, icon=":material/warning:")

    sb = st.sidebar
    therapist_filter = state.get("therapist_level", True) and not state.get("meeting_mode")
    sb.header("Filters")
    months = _months(options)
    if state["f_period"][0] not in months or state["f_period"][1] not in months:
        d = default_filters(options)
        state["f_period"] = (d.first_month.strftime("%Y-%m"), d.last_month.strftime("%Y-%m"))
    if len(months) > 1:
        # `value` makes Streamlit register a range slider: without it the widget is a
        # single-value one, which reads the range the browser sends back as its first month
        sb.select_slider(
            "Months",
            options=months,
            value=tuple(state["f_period"]),
            key="f_period",
            format_func=lambda m: pd.Timestamp(m).strftime("%b %Y"),
            help="Session metrics use sessions dated in these months; dropout and outcome "
            "metrics use episodes that ended (last session) in them.",
        )
    for name, label in FILTER_LABELS.items():
        if name == "therapist" and not therapist_filter:
            state[f"f_{name}"] = ALL
            continue
        values = options.values.get(name, [])
        if state.get(f"f_{name}") not in [ALL, *values]:
            state[f"f_{name}"] = ALL
        sb.selectbox(label, [ALL, *values], key=f"f_{name}")
    sb.radio(
        "Alliance measure",
        list(ALLIANCE_MEASURES),
        key="f_alliance",
        format_func=ALLIANCE_MEASURES.get,
        horizontal=True,
    )
    sb.radio(
        "Outcome measure",
        list(MEASURES),
        key="f_outcome",
        format_func=lambda k: MEASURES[k].label,
        horizontal=True,
    )
    filters = current_filters()
    _mirror_to_address(filters)
    return filters


# the section a page that shows one at a time has open (render_sections): kept in the address
# by that page; the filter mirror, which runs first, hands a linked value on to it
SECTION_PARAM = "show"
LINKED_SECTION = "linked_section"


def _mirror_to_address(filters: Filters) -> None:
    """Write the filters into the URL (a link reopens the same view), dropping every other
    parameter; a section named in it is handed to the page (render_sections puts it back)."""
    wanted = filters.to_query_params()
    params = st.query_params
    current = params.to_dict()
    # this run's only: a value not taken up by this page is gone on the next run
    st.session_state[LINKED_SECTION] = current.get(SECTION_PARAM)
    for key in [k for k in current if k not in wanted]:
        del params[key]
    changed = {k: v for k, v in wanted.items() if params.get_all(k) != [v]}
    if changed:
        params.update(changed)


def current_filters() -> Filters:
    """The filters in force, read from the sidebar widgets' state.

    Pages call this rather than receiving the filters from the entry script, so a page renders
    the same whether the entry script ran first (the server) or not (AppTest reruns).
    """
    state = st.session_state
    first, last = state["f_period"]
    chosen = {
        name: None if state.get(f"f_{name}", ALL) == ALL else state[f"f_{name}"]
        for name in FILTER_LABELS
    }
    if not state.get("therapist_level", True) or state.get("meeting_mode"):
        chosen["therapist"] = None  # enforced here too, not only by hiding the widget
    return Filters(
        first_month=parse_month(first),
        last_month=parse_month(last),
        alliance_measure=state.get("f_alliance", "srs"),
        outcome_measure=state.get("f_outcome", "ors"),
        **chosen,
    )


def set_filter(name: str, value: str | None) -> None:
    """Change one global filter from a page (e.g. clicking a therapist in a funnel plot).

    Streamlit forbids changing a widget's state after the widget is drawn in a run, so the
    change is kept as pending and applied before the sidebar draws on the next run (call
    st.rerun() after this, unless it runs in a widget callback).
    """
    st.session_state.setdefault("f_pending", {})[name] = value if value is not None else ALL


# --- context and views --------------------------------------------------------------------------
def context(filters: Filters | None = None) -> Context:
    """The page's context: current filters, settings, and the signed-in role's limits."""
    return Context(
        con=connection(),
        filters=filters or current_filters(),
        settings=settings(),
        allowed_sites=st.session_state.get("allowed_sites"),
        therapist_level=st.session_state.get("therapist_level", True),
        meeting_mode=st.session_state.get("meeting_mode", False),
    )


@st.cache_data(ttl=3600, max_entries=128, show_spinner=False)
def _cached_view(
    name: str,
    version: str,
    filters: Filters,
    settings_: Settings,
    allowed: tuple[str, ...] | None,
    therapist_level: bool,
    meeting_mode: bool,
    _build: Callable[[Context], View],
) -> View:
    ctx = Context(
        connection(),
        filters,
        settings_,
        list(allowed) if allowed is not None else None,  # (): no site, never "all sites"
        therapist_level,
        meeting_mode,
    )
    return _build(ctx)


def view(name: str, build: Callable[[Context], View], ctx: Context) -> View:
    """Build (or fetch from cache) a page's view for these filters and settings."""
    with st.spinner("Computing…"):
        return _cached_view(
            name,
            data_version(),
            ctx.filters,
            ctx.settings,
            tuple(ctx.allowed_sites) if ctx.allowed_sites is not None else None,
            ctx.therapist_level,
            ctx.meeting_mode,
            build,
        )


def render_tiles(v: View, ctx: Context) -> None:
    if not v.tiles:
        return
    per_row = 4
    for start in range(0, len(v.tiles), per_row):
        cols = st.columns(per_row)
        for col, tile in zip(cols, v.tiles[start : start + per_row], strict=False):
            delta = tile.delta_text()
            col.metric(
                markdown_safe(tile.label),
                tile.value_text(ctx.policy.label),
                delta=f"{delta} vs previous period" if delta else None,
                # coloured only when the change is beyond chance (Tile.delta_colour)
                delta_color=tile.delta_colour(),
                help=markdown_safe(tile.help),
                border=True,
            )
            if tile.n_text:
                col.caption(markdown_safe(tile.n_text))


def render_panel(panel: Panel, ctx: Context, *, key_prefix: str = "") -> object | None:
    """One chart: the figure, its reading note, and the data behind it. Returns a selection."""
    # titles, messages and readings name sites, programs and client groups from the data:
    # shown as written, never as markdown (Panel keeps the plain text for exports)
    if panel.figure is None:
        st.subheader(markdown_safe(panel.title), anchor=False)
        st.info(
            markdown_safe(panel.message or "Nothing to show for this selection."),
            icon=":material/info:",
        )
        return None
    # drawn once, not twice (screen_margins.screen_margins); the figure itself, which the exports
    # use, keeps its own margins
    fig = panel.figure
    try:
        margins = screen_margins.screen_margins(fig)
    except Exception:  # noqa: BLE001 (only a drawing speed-up: never worth a broken page)
        margins = {}
    fig.layout.margin.update(margins)
    try:
        event = st.plotly_chart(
            fig,
            width="stretch",
            key=f"{key_prefix}{panel.key}",
            on_select="rerun" if panel.key.startswith("funnel") else "ignore",
            # no camera button: plotly's own PNG export would bypass the audit log; the
            # Download row below exports every format, each recorded first
            config=CHART_CONFIG,
        )
    finally:
        fig.layout.margin.update(dict.fromkeys(margins))
    if panel.reading:
        st.caption(markdown_safe(panel.reading))
    if not panel.data.empty:
        with st.expander("Data behind this chart"):
            st.dataframe(display_data(panel.data, ctx), hide_index=True, width="stretch")
    if can("export"):
        # Downloads: the bytes are built only when a button is clicked (a callable `data`
        # runs on click, in its own thread), so a rerun never exports every chart. That
        # callable writes the audit entry first and delivers nothing when it cannot.
        download_row(panel, ctx, key_prefix)
    return event


# Plotly's mode bar without its camera (toImage) button: a PNG through it would not be audited.
CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]}

_DOWNLOAD_HELP = {
    "png": "The chart for slides (2240 × 1260 px) with its title, filters, n and footer",
    "svg": "The chart as a vector image (print, documents)",
    "pdf": "The chart as a one-page PDF",
    "csv": "The data behind the chart, withheld cells as on screen",
    "xlsx": "The data behind the chart as a workbook, with a sheet saying what it is",
}


def download_row(panel: Panel, ctx: Context, key_prefix: str = "") -> None:
    """A chart's Download buttons; each records its audit entry before anything is delivered."""
    from alliance import exports

    meta_facts = exports.export_meta(ctx, meta=meta())
    identity = audit_identity()
    path = db_path()
    filters = ctx.filters.to_query_params()

    # A fragment: the click's callback reruns this row only, not the page (a page rerun
    # would also re-register every other chart's download).
    @st.fragment
    def row() -> None:
        keys = []
        with st.container(horizontal=True, gap="small", vertical_alignment="center"):
            st.caption("Download", width="content")
            for item in exports.panel_downloads(panel, meta_facts):
                key = f"{key_prefix}{panel.key}_dl_{item.fmt}"
                keys.append(key)
                outcome = st.session_state.setdefault(f"{key}_outcome", audit_log.Outcome())
                entry = functools.partial(
                    audit_log.record,
                    path,
                    **identity,
                    event=f"download_{item.fmt}",
                    detail={
                        "chart": panel.key,
                        "format": item.fmt,
                        "file": item.file_name,
                        "filters": filters,  # given here: the callable runs outside the page
                    },
                )
                st.download_button(
                    item.label,
                    data=audit_log.guarded(item.build, entry, outcome),
                    file_name=item.file_name,
                    mime=item.mime,
                    key=key,
                    help=_DOWNLOAD_HELP.get(item.fmt),
                    icon=":material/download:",
                    type="tertiary",
                    on_click=download_clicked,
                    args=(outcome, f"{key}_refused"),
                )
        for key in keys:  # a click whose entry could not be written: nothing was delivered
            refused = st.session_state.pop(f"{key}_refused", None)
            if refused:
                st.error(refused, icon=":material/lock:")

    row()


def download_clicked(outcome: audit_log.Outcome, refused_key: str) -> None:
    """A Download click's callback (the row's rerun): wait briefly for the click's data callable
    to have recorded its entry, and keep the plain reason to show if it could not."""
    message = outcome.wait_for_next(audit_log.WAIT_S + 3.0)
    if message:
        st.session_state[refused_key] = message


def display_data(df: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """The data behind a chart as shown on screen: withheld cells read "n < k"."""
    return display_table(df, policy=ctx.policy)


def render_head(v: View, ctx: Context) -> None:
    """The page's title and question, then its notice (nothing to show) or its tiles."""
    st.title(v.title, anchor=False)
    st.caption(v.question)
    if v.notice:
        st.warning(v.notice, icon=":material/lock:")
        return
    render_tiles(v, ctx)


def render_sections(name: str, module: ModuleType, ctx: Context) -> View:
    """A page that shows one section at a time: the title and tiles, a picker of the sections
    `module.sections(ctx)` offers this role, and the chosen section's panels, built by
    `module.build(ctx, section)` (a filter change builds and draws only the section in view).

    The section is kept in the address (?show=<label>), so a link opens the same section; a
    link naming a section this page does not offer this role is ignored (the section open in
    this session stays, else the first). The choice is kept for the session, so coming back to
    the page reopens it.
    """
    by_label = {label: key for key, label in module.sections(ctx).items()}
    first = next(iter(by_label))
    key = f"show_{name}"
    state = st.session_state
    requested = state.pop(LINKED_SECTION, None)  # from the address (see _mirror_to_address)
    if requested in by_label:
        state[key] = requested
    elif state.get(key) not in by_label:
        state[key] = first
    head = st.container()  # title and tiles: drawn above the picker once the view is built
    picker = st.empty()
    label = picker.segmented_control(
        "Show",
        list(by_label),
        required=True,
        key=key,
        on_change=_section_to_address,
        args=(key,),
        persist_state="session",
    )
    st.query_params[SECTION_PARAM] = label
    v = view(
        f"{name}:{by_label[label]}", functools.partial(module.build, section=by_label[label]), ctx
    )
    with head:
        render_head(v, ctx)
    if v.notice:
        picker.empty()  # nothing to choose between
    else:
        for panel in v.panels:
            render_panel(panel, ctx)
    return v


def _section_to_address(key: str) -> None:
    """A click on the section picker: the address names the new section before the rerun."""
    st.query_params[SECTION_PARAM] = st.session_state[key]


def render_view(v: View, ctx: Context) -> None:
    render_head(v, ctx)
    if not v.notice:
        for panel in v.panels:
            render_panel(panel, ctx)


def banners() -> None:
    """Demo-data and access-mode notices shown on every page."""
    kind = meta().get("dataset_kind", "empty")
    if kind == "demo":
        st.info(
            "**Demo data.** This is a synthetic clinic for exploring the dashboard; no real "
            "clients. Import your clinic's export on the Data page.",
            icon=":material/science:",
        )
    problem = settings_problem()
    if problem:  # names the file and the values: escaped, never markdown
        st.warning(markdown_safe(problem), icon=":material/tune:")
    swept = st.session_state.pop("swept_note", None)
    if swept:
        st.info(markdown_safe(swept), icon=":material/cleaning_services:")
    mode = st.session_state.get("auth_mode_text")
    if mode:
        st.caption(mode)


def replace_filters(filters: Filters, **changes: object) -> Filters:
    return dataclasses.replace(filters, **changes)
