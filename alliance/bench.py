"""`python -m alliance bench`: every page's server-side work at scale, against plain pandas.

For each page it runs the page's complete view (its named queries, statistics and figure
building; no Streamlit cache) for R random filter combinations and reports p50/p95 seconds. A
page that shows one view at a time (a section, a comparison: VIEWS) builds only the view on
screen on a filter change, so each filter combination is timed once per view; the page's
figures pool its views and each view's are reported beside them. It
then runs the same computations the way most Streamlit dashboards are built — everything loaded
into pandas DataFrames in memory, filtered and grouped there (alliance/bench_pandas.py) — over the
same data and filters, and reports the ratio per page (`ratio`: the typical dashboard, which
loads the sessions and groups episodes from them on each change; `ratio_facts`: pandas given our
precomputed per-episode tables as well). Each approach runs in its own process so that its peak
resident memory is its own.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from alliance import db
from alliance.filters import add_months
from alliance.panel import Context
from alliance.settings import Settings

PAGES = {
    "overview": "alliance.views.overview",
    "alliance": "alliance.views.alliance_page",
    "dropout": "alliance.views.dropout",
    "outcomes": "alliance.views.outcomes",
    "therapists": "alliance.views.therapists",
    "demographics": "alliance.views.demographics",
    "profile": "alliance.views.profile",
    "ruptures": "alliance.views.ruptures",
}
BENCH_DIR = db.ROOT / "data" / "bench"
# Pages that show one view at a time, chosen on the page: a filter change builds the view on
# screen, so each filter set is timed once per view and the page's p50 / p95 pool them (the
# per-view figures are reported too). The keyword argument of the page's build that names it.
VIEWS = {
    "profile": ("section", ("where", "therapists", "background")),
    "demographics": ("dimension", ("race_ethnicity", "age_band", "gender")),
    "ruptures": ("section", ("time", "units", "after")),
}


def views(page: str) -> tuple[str | None, ...]:
    """The views of a page one filter set is timed with (None: the page has one)."""
    return VIEWS[page][1] if page in VIEWS else (None,)


def bench_db(sessions: int, seed: int) -> Path:
    """Reused across runs, keyed by N, seed and the code that builds it (demo + schema)."""
    import hashlib

    sources = [db.ROOT / "alliance" / "demo.py", *sorted(db.SCHEMA_DIR.glob("*.sql"))]
    version = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:8]
    return BENCH_DIR / f"demo-{sessions}-{seed}-{version}.duckdb"


def random_filters(con, repeat: int, seed: int = 1) -> list:
    """R random, realistic filter combinations (a period of 1-12 months, often a site...)."""
    from alliance import queries
    from alliance.filters import Filters

    df = queries.run(con, "filter_options", allowed_sites=None)
    months = sorted(df.loc[df["dimension"] == "month", "value"])
    first = dt.date.fromisoformat(months[0])
    last = dt.date.fromisoformat(months[-1])
    values = {d: sorted(p["value"]) for d, p in df[df["dimension"] != "month"].groupby("dimension")}
    rng = random.Random(seed)
    out = []
    for _ in range(repeat):
        length = rng.choice([1, 3, 6, 12, 12, 12])
        end = add_months(last, -rng.choice([0, 0, 0, 1, 3, 6]))
        start = max(first, add_months(end, -(length - 1)))
        pick = {}
        for attr, p in (
            ("site", 0.5),
            ("program", 0.3),
            ("age_band", 0.2),
            ("gender", 0.15),
            ("race_ethnicity", 0.15),
            ("therapist", 0.1),
        ):
            if rng.random() < p:
                pick[attr] = rng.choice(values[attr])
        out.append(
            Filters(
                first_month=start,
                last_month=end,
                alliance_measure=rng.choice(["srs", "srs", "srs", "wai"]),
                outcome_measure=rng.choice(["ors", "ors", "phq9", "gad7"]),
                **pick,
            )
        )
    return out


def _time_pages(run_page, filters: list) -> dict[str, list[float]]:
    """Seconds per run, pooled per page and, for pages with views, also per 'page:view'."""
    times: dict[str, list[float]] = {}
    for page in PAGES:
        for f in filters:
            for view in views(page):
                started = time.perf_counter()
                run_page(page, f, view)
                took = time.perf_counter() - started
                times.setdefault(page, []).append(took)
                if view is not None:
                    times.setdefault(f"{page}:{view}", []).append(took)
    return times


def worker(kind: str, path: Path, repeat: int) -> dict:
    """Run in a child process: time every page for `repeat` filter sets; report peak RSS."""
    con = db.open_read_only(path)
    filters = random_filters(con, repeat)
    settings = Settings()
    if kind == "duckdb":
        modules = {page: importlib.import_module(mod) for page, mod in PAGES.items()}

        def run_page(page: str, f, view: str | None) -> None:
            ctx = Context(con=con, filters=f, settings=settings)
            if view is None:
                modules[page].build(ctx)
            else:
                modules[page].build(ctx, **{VIEWS[page][0]: view})

        # one warm-up pass (imports, DuckDB's first-touch of the file), not timed
        for page in PAGES:
            for view in views(page):
                run_page(page, filters[0], view)
        times = _time_pages(run_page, filters)
    else:
        from alliance import bench_pandas

        started = time.perf_counter()
        data = bench_pandas.load(con, facts=kind == "pandas-facts")
        load_s = time.perf_counter() - started
        con.close()

        def run_page(page: str, f, view: str | None) -> None:
            if view is None:
                bench_pandas.PAGES[page](data, f, settings)
            else:
                bench_pandas.PAGES[page](data, f, settings, view)

        times = _time_pages(run_page, filters)
        times["_load_s"] = [load_s]
    return {"times": times, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec;
    getrusage's ru_maxrss would carry over the parent's peak (here: building the clinic)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, path: Path, repeat: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "alliance.bench", kind, str(path), str(repeat)],
        capture_output=True,
        text=True,
        check=False,
        cwd=db.ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[idx]


def run(
    sessions: int, repeat: int, seed: int = 7, pandas: bool = True, browser: bool = False
) -> dict:
    path = bench_db(sessions, seed)
    build_s = None
    if not path.exists():
        started = time.perf_counter()
        db.write_demo(path, sessions=sessions, seed=seed)
        build_s = time.perf_counter() - started
    ours = _child("duckdb", path, repeat)
    theirs = _child("pandas", path, repeat) if pandas else None
    facts = _child("pandas-facts", path, repeat) if pandas else None
    pages = {}
    for page in PAGES:
        t = ours["times"][page]
        entry = {"p50_s": round(statistics.median(t), 4), "p95_s": round(_pct(t, 0.95), 4)}
        if theirs:
            pt = theirs["times"][page]
            entry["pandas_p50_s"] = round(statistics.median(pt), 4)
            entry["ratio"] = round(entry["pandas_p50_s"] / entry["p50_s"], 2)
        if facts:
            entry["pandas_facts_p50_s"] = round(statistics.median(facts["times"][page]), 4)
            entry["ratio_facts"] = round(entry["pandas_facts_p50_s"] / entry["p50_s"], 2)
        if page in VIEWS:
            entry["views"] = {
                view: {
                    "p50_s": round(statistics.median(ours["times"][f"{page}:{view}"]), 4),
                    "p95_s": round(_pct(ours["times"][f"{page}:{view}"], 0.95), 4),
                }
                for view in views(page)
            }
        pages[page] = entry
    result = {
        "sessions": sessions,
        "seed": seed,
        "repeat": repeat,
        "build_s": round(build_s, 1) if build_s is not None else None,
        "build_note": None if build_s is not None else f"reused {path.name}",
        "pages": pages,
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
    }
    if theirs:
        result["min_ratio"] = min(p["ratio"] for p in pages.values())
        result["pandas_peak_rss_mb"] = round(theirs["peak_rss_mb"], 1)
        result["pandas_load_s"] = round(theirs["times"]["_load_s"][0], 2)
    if facts:
        result["min_ratio_facts"] = min(p["ratio_facts"] for p in pages.values())
        result["pandas_facts_peak_rss_mb"] = round(facts["peak_rss_mb"], 1)
        result["pandas_facts_load_s"] = round(facts["times"]["_load_s"][0], 2)
    if browser:
        from alliance import bench_browser

        con = db.open_read_only(path)
        # the three largest sites: every page has the most to draw there (alphabetically first
        # sites can be small or record no alliance items, and the profile shows only a notice)
        sites = [
            r[0]
            for r in con.execute(
                "select site from session_facts group by site order by count(*) desc, site limit 3"
            ).fetchall()
        ]
        con.close()
        result["browser"] = bench_browser.run(path, sites)
        result["browser_sites"] = sites
        result["browser_max_s"] = max(p["max_s"] for p in result["browser"].values())
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    return result


def main(argv: list[str]) -> None:
    kind, path, repeat = argv[0], Path(argv[1]), int(argv[2])
    print(json.dumps(worker(kind, path, repeat)))


if __name__ == "__main__":
    main(sys.argv[1:])
