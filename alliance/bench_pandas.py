"""The baselines for `python -m alliance bench`: each page computed the common Streamlit way.

Everything is loaded into pandas DataFrames once (as `st.cache_data(pd.read_sql(...))` would),
then every filter change masks and groups those frames in memory. Two baselines:

- **typical** (the issue's "the way most Streamlit dashboards are built", the bench's `ratio`):
  the dashboard loads the sessions, one row per session with its episode's attributes (what a
  clinic's export holds, joined), and computes what it needs from them on each change:
  episode-level figures (dropout, early alliance, first and last outcome scores) are grouped
  from the sessions of the episodes the filters can select (derive_episodes). Precomputed
  per-episode facts are one of our techniques, so this baseline does not get them.
- **facts** (`ratio_facts`): the same, but the dashboard also loads our precomputed
  per-episode tables (episode_facts, episode_outcomes) and only masks and groups them. This
  measures pandas against DuckDB on the same prepared tables.

Each page's baseline computes that page's main aggregates (the definitions and filters of its
named queries) and the previous period's figures where the page's tiles compare with them, and
calls the same statistics, but builds at most a chart or two and leaves out most tiles and the
secondary panels: on most pages it does less work than the page, so both ratios flatter pandas
(README, Performance).
tests/test_bench.py checks that the derived episodes equal episode_facts and episode_outcomes,
that its headline figures equal the named queries' (overview_sessions, overview_episodes) with
either baseline, and that every page's baseline runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance import charts, stats
from alliance.filters import Filters
from alliance.settings import Settings

FILTER_COLUMNS = {
    "site": "site",
    "program": "program",
    "therapist": "therapist",
    "age_band": "age_band",
    "gender": "gender",
    "race_ethnicity": "race_ethnicity",
}


# attributes of the episode, the same on each of its sessions: masking sessions by them keeps
# or drops whole episodes (an episode's site and therapist are those of its sessions, which can
# change within the episode, so they are masked after grouping)
EPISODE_FILTERS = ("program", "age_band", "gender", "race_ethnicity")
MEASURES = ("ors", "phq9", "gad7")


@dataclass(frozen=True)
class Data:
    sessions: pd.DataFrame
    episodes: pd.DataFrame | None = None  # precomputed (the facts baseline); None: derived
    outcomes: pd.DataFrame | None = None


def load(con, facts: bool = False) -> Data:
    """Load into memory, as a dashboard does on start-up: the sessions (ordered by episode and
    session number, as the export lists them), and with `facts` our per-episode tables."""
    s = con.execute("select * from session_facts order by episode_id, session_index").df()
    if not facts:
        return Data(s)
    e = con.execute("select * from episode_facts").df()
    o = con.execute("select * from episode_outcomes").df()
    return Data(s, e, o)


def derive_episodes(s: pd.DataFrame) -> pd.DataFrame:
    """One row per episode from its sessions (rows ordered by episode and session number), by
    the definitions of episode_facts (schema/derive.sql): site of the first session, the
    therapist who held most sessions (on a tie the earliest), first and last date, dropout, mean SRS (WAI-SR) of the first
    three sessions that have one, largest SRS drop, first and last score of each outcome."""
    g = s.groupby("episode_id", sort=False)
    first = ["client_id", "site", "program", "age_band", "gender", "race_ethnicity", "end_reason"]
    aggs = {c: (c, "first") for c in first}
    aggs |= {
        "start_date": ("session_date", "min"),
        "end_date": ("session_date", "max"),
        "n_sessions": ("session_date", "size"),
        "n_srs": ("srs", "count"),
    }
    for m in MEASURES:
        aggs |= {f"{m}_first": (m, "first"), f"{m}_last": (m, "last"), f"{m}_n": (m, "count")}
    e = g.agg(**aggs)
    # groups in order of first appearance; a stable sort keeps that order among equal counts
    seen = s.groupby(["episode_id", "therapist"], sort=False).size()
    seen = seen.sort_values(ascending=False, kind="stable")
    seen = seen[~seen.index.get_level_values(0).duplicated()]
    e["therapist"] = pd.Series(seen.index.get_level_values(1), index=seen.index.get_level_values(0))
    e["max_srs_drop"] = (s["prev_srs"] - s["srs"]).round(1).groupby(s["episode_id"]).max()
    for score in ("srs", "wai"):
        x = s.loc[s[score].notna(), ["episode_id", score]]
        x = x[x.groupby("episode_id", sort=False).cumcount() < 3]
        e[f"early_{score}"] = x.groupby("episode_id", sort=False)[score].mean()
    e["end_month"] = e["end_date"].dt.to_period("M").dt.to_timestamp().astype(e["end_date"].dtype)
    e["ended"] = e["end_reason"].notna()
    e["dropout"] = (e["end_reason"] == "dropout").astype("boolean").mask(~e["ended"])  # open: NA
    return e.reset_index()


def derive_outcomes(e: pd.DataFrame, measure: str) -> pd.DataFrame:
    """episode_outcomes' rows of one measure: episodes with a score, improvement oriented so
    that positive = better (ORS last - first, rounded to one decimal; PHQ-9, GAD-7 first - last)."""
    x = e[e[f"{measure}_n"] > 0]
    first, last = x[f"{measure}_first"], x[f"{measure}_last"]
    improvement = (last - first).round(1) if measure == "ors" else first - last
    return x.assign(
        measure=measure,
        first_score=first,
        last_score=last,
        n_admin=x[f"{measure}_n"],
        improvement=improvement,
    )


def episodes(d: Data, f: Filters) -> pd.DataFrame:
    """The episodes a page can select with these filters: precomputed, or grouped from the
    sessions of the episodes whose attributes pass (what a typical dashboard does on a change)."""
    if d.episodes is not None:
        return d.episodes
    s = d.sessions
    m = None
    for attr in EPISODE_FILTERS:
        value = getattr(f, attr)
        if value is not None:
            m = (s[attr] == value) if m is None else m & (s[attr] == value)
    return derive_episodes(s if m is None else s[m])


def _mask(df: pd.DataFrame, f: Filters, date_col: str) -> pd.Series:
    dates = df[date_col]
    m = (dates >= pd.Timestamp(f.date_from)) & (dates < pd.Timestamp(f.date_to))
    for attr, col in FILTER_COLUMNS.items():
        value = getattr(f, attr)
        if value is not None:
            m &= df[col] == value
    return m


def sessions_in_view(d: Data, f: Filters) -> pd.DataFrame:
    return d.sessions[_mask(d.sessions, f, "session_date")]


def ended_in_view(e: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """Episodes (from `episodes`) that ended in the period and pass the filters."""
    return e[e["ended"] & _mask(e, f, "end_date")]


def outcomes_in_view(d: Data, e: pd.DataFrame, f: Filters, measure: str) -> pd.DataFrame:
    """Ended episodes in the period with two or more scores of the measure."""
    if d.outcomes is not None:
        o = d.outcomes
        o = o[o["measure"] == measure]
    else:
        o = derive_outcomes(e[e["ended"]], measure)
    return o[o["ended"] & _mask(o, f, "end_date") & (o["n_admin"] >= 2)]


def _score(s: pd.DataFrame, f: Filters) -> pd.Series:
    return s["wai"] if f.alliance_measure == "wai" else s["srs"]


def _headline(d: Data, ep: pd.DataFrame, f: Filters, st: Settings) -> dict:
    s = sessions_in_view(d, f)
    e = ended_in_view(ep, f)
    o = outcomes_in_view(d, ep, f, f.outcome_measure)
    rc = st.reliable_change(f.outcome_measure)
    cut = st.clinical_cutoff(f.outcome_measure)
    hib = f.outcome_measure == "ors"
    start = o["first_score"] < cut if hib else o["first_score"] >= cut
    end = o["last_score"] < cut if hib else o["last_score"] >= cut
    return {
        "sessions": len(s),
        "n_clients": s["client_id"].nunique(),
        "active_episodes": s["episode_id"].nunique(),
        "therapists": s["therapist"].nunique(),
        "srs_n": int(s["srs"].count()),
        "mean_srs": s["srs"].mean(),
        "sd_srs": s["srs"].std(),
        "srs_below": int((s["srs"] < st.srs_cutoff).sum()),
        "ended": len(e),
        "ended_clients": e["client_id"].nunique(),
        "dropouts": int(e["dropout"].sum()),
        "outcome_n": len(o),
        "outcome_clients": o["client_id"].nunique(),
        "reliable_improvement": int((o["improvement"] >= rc).sum()),
        "reliable_deterioration": int((o["improvement"] <= -rc).sum()),
        "clinical_n": int(start.sum()),
        "recovered": int((start & ~end).sum()),
        "r": o["early_srs"].corr(o["improvement"]),
    }


def _monthly(s: pd.DataFrame, f: Filters, st: Settings) -> pd.DataFrame:
    x = s.assign(score=_score(s, f)).dropna(subset=["score"])
    g = x.groupby("month")
    return pd.DataFrame(
        {
            "n_clients": g["client_id"].nunique(),
            "n": g.size(),
            "mean_score": g["score"].mean(),
            "sd_score": g["score"].std(),
            "below": g["srs"].apply(lambda v: (v < st.srs_cutoff).sum()),
        }
    ).reset_index()


def _monthly_dropout(e: pd.DataFrame) -> pd.DataFrame:
    g = e.groupby("end_month")
    out = pd.DataFrame(
        {"n_clients": g["client_id"].nunique(), "ended": g.size(), "dropouts": g["dropout"].sum()}
    ).reset_index()
    return out.assign(dropout_rate=out["dropouts"] / out["ended"])


def _line(df: pd.DataFrame, x: str, y: str) -> None:
    charts.lines(df, x=x, y=y, group=None, title="t", subtitle="s", x_label=x, y_label=y)


def overview(d: Data, f: Filters, st: Settings) -> None:
    ep = episodes(d, f)  # the previous period's filters select the same episodes
    _headline(d, ep, f, st)
    _headline(d, ep, f.previous_period(), st)
    _line(_monthly(sessions_in_view(d, f), f, st), "month", "mean_score")
    _line(_monthly_dropout(ended_in_view(ep, f)), "end_month", "dropout_rate")


def alliance(d: Data, f: Filters, st: Settings) -> None:
    s = sessions_in_view(d, f)
    score = _score(s, f)
    bins = np.floor(score.dropna() / (0.1 if f.alliance_measure == "wai" else 2.0))
    bins.groupby(bins).size()
    m = _monthly(s, f, st)
    stats.xbar_chart(m["mean_score"], m["sd_score"], m["n"], None)
    g = s.assign(score=score, num=s["session_index"].clip(upper=12)).groupby("num")["score"]
    _line(g.agg(["mean", "std", "count"]).reset_index(), "num", "mean")
    drops_dropout(ended_in_view(episodes(d, f), f), st)


def drops_dropout(e: pd.DataFrame, st: Settings) -> pd.DataFrame:
    """alliance_drops_dropout: ended episodes with two or more SRS, by whether the episode's
    largest SRS drop reached the threshold; their episodes, dropouts and dropout rate."""
    e = e[e["n_srs"] >= 2]
    g = e.groupby((e["max_srs_drop"] >= st.rupture_threshold).rename("had_drop"))
    out = g.agg(episodes=("dropout", "size"), dropouts=("dropout", "sum")).reset_index()
    return out.assign(dropout_rate=out["dropouts"] / out["episodes"])


def dropout(d: Data, f: Filters, st: Settings) -> None:
    ep = episodes(d, f)
    e = ended_in_view(ep, f)
    m = _monthly_dropout(e)
    stats.p_chart(m["dropouts"], m["ended"], None)
    x = e.dropna(subset=["early_srs"])
    x.groupby(x["early_srs"] < st.srs_cutoff)["dropout"].agg(["mean", "size"])
    if len(x) >= 10:
        x.groupby(pd.qcut(x["early_srs"], 5, duplicates="drop"), observed=True)["dropout"].mean()
        y = x["dropout"].astype(float)
        stats.cohens_d(x.loc[~x["dropout"], "early_srs"], x.loc[x["dropout"], "early_srs"])
        stats.logistic_or_per_sd_lower(x["early_srs"], y)
        stats.point_biserial_r(x["early_srs"], y)
        stats.logistic_curve(x["early_srs"], y, np.linspace(20, 40, 41))
    e.groupby(["end_reason", e["n_sessions"].clip(upper=13)]).size()
    _line(m, "end_month", "dropout_rate")


def outcomes(d: Data, f: Filters, st: Settings) -> None:
    ep = episodes(d, f)
    o = outcomes_in_view(d, ep, f, f.outcome_measure)
    rc = st.reliable_change(f.outcome_measure)
    before = outcomes_in_view(d, ep, f.previous_period(), f.outcome_measure)  # the tiles' change
    (before["improvement"] >= rc).mean()
    o.groupby((o["improvement"] / 2).round() * 2).size()
    g = o.groupby("end_month")
    g.agg(n=("client_id", "size"), ri=("improvement", lambda v: (v >= rc).sum()))
    x = o.dropna(subset=["early_srs"])
    if len(x) >= 10:
        terciles = pd.qcut(x["early_srs"], 3, labels=False, duplicates="drop")
        s = d.sessions[d.sessions["episode_id"].isin(x["episode_id"])]
        s = s.merge(x[["episode_id"]].assign(tercile=terciles.to_numpy()), on="episode_id")
        col = {"ors": "ors", "phq9": "phq9", "gad7": "gad7"}[f.outcome_measure]
        s.groupby(["tercile", s["session_index"].clip(upper=12)])[col].agg(["mean", "std", "count"])
        x.groupby(pd.qcut(x["early_srs"], 10, duplicates="drop"), observed=True)["improvement"].agg(
            ["mean", "std", "size"]
        )
        stats.pearson_r(x["early_srs"], x["improvement"])
    if len(o) > 1:
        stats.pre_post_effect_size(o["first_score"], o["last_score"], f.outcome_measure == "ors")


def therapists(d: Data, f: Filters, st: Settings) -> None:
    ep = episodes(d, f)
    e = ended_in_view(ep, f)
    g = e.groupby("therapist")
    drop = pd.DataFrame({"n": g.size(), "value": g["dropout"].mean()}).reset_index()
    if len(drop) > 2:
        stats.funnel(
            drop.rename(columns={"therapist": "unit"}),
            kind="proportion",
            target=e["dropout"].mean(),
            method=st.overdispersion,
        )
    a = (
        e.dropna(subset=["early_srs"])
        .groupby("therapist")["early_srs"]
        .agg(["mean", "std", "size"])
    )
    a.reset_index()
    o = outcomes_in_view(d, ep, f, f.outcome_measure)
    if len(o) > 20 and o["therapist"].nunique() > 2:
        df = o.assign(intake=o["first_score"], program=o["program"].fillna("(missing)"))
        stats.casemix_adjusted(
            df,
            outcome="improvement",
            covariates=["intake"],
            categorical=["age_band", "program"],
            group="therapist",
        )
        stats.therapist_icc(df["improvement"], df["intake"], df["therapist"])


def demographics(d: Data, f: Filters, st: Settings, dim: str = "race_ethnicity") -> None:
    s = sessions_in_view(d, f)
    s.groupby(dim).agg(n=("srs", "count"), mean=("srs", "mean"), clients=("client_id", "nunique"))
    ep = episodes(d, f)
    e = ended_in_view(ep, f)
    e.groupby(dim).agg(n=("dropout", "size"), rate=("dropout", "mean"))
    e.groupby([dim, "site"]).agg(n=("dropout", "size"), rate=("dropout", "mean"))
    o = outcomes_in_view(d, ep, f, f.outcome_measure)
    rc = st.reliable_change(f.outcome_measure)
    o.assign(ri=o["improvement"] >= rc).groupby(dim)["ri"].agg(["mean", "size"])


# the profile page's sections and the groupings each shows (None: the whole page, a report)
PROFILE_GROUPINGS = {
    "where": [["site"], ["program"], ["month"]],
    "therapists": [
        ["therapist"],
        *(["therapist", a] for a in ("race_ethnicity", "age_band", "gender")),
    ],
    "background": [["race_ethnicity"], ["age_band"], ["gender"]],
}


# the profile's dimensions and the session columns of each measure's items (profile_dimensions)
PROFILE_ITEMS = {
    "srs": {
        "heard": "srs_relationship",
        "goals": "srs_goals",
        "approach": "srs_approach",
        "overall": "srs_overall",
    },
    "wai": {"heard": "wai_bond_mean", "goals": "wai_goal_mean", "approach": "wai_task_mean"},
}
PROFILE_COLUMNS = [
    "grouping",
    "unit",
    "subgroup",
    "dimension",
    "n_clients",
    "episodes",
    "administrations",
    "mean_score",
    "sd_score",
]


def profile_dimensions(d: Data, f: Filters, groupings: list[list[str]]) -> pd.DataFrame:
    """What the named query profile_dimensions gives, from the sessions: per unit of each
    grouping (and the clinic) and dimension, each episode's mean item score over its
    administrations in the unit is one observation; their mean and SD, the episodes, their
    administrations and distinct clients."""
    s = sessions_in_view(d, f)
    items = PROFILE_ITEMS[f.alliance_measure]
    keys = sorted({c for g in groupings for c in g})
    long = (
        s[[*keys, "episode_id", "client_id", *items.values()]]
        .rename(columns={col: dim for dim, col in items.items()})
        .melt(id_vars=[*keys, "episode_id", "client_id"], var_name="dimension")
        .dropna(subset=["value"])
    )
    out = []
    for by in [[], *groupings]:
        per_episode = long.groupby([*by, "dimension", "episode_id"], sort=False).agg(
            m=("value", "mean"), n=("value", "size"), client_id=("client_id", "first")
        )
        r = (
            per_episode.groupby([*by, "dimension"])
            .agg(
                n_clients=("client_id", "nunique"),
                episodes=("m", "size"),
                administrations=("n", "sum"),
                mean_score=("m", "mean"),
                sd_score=("m", "std"),
            )
            .reset_index()
        )
        r["grouping"] = "/".join(by) if by else "clinic"
        r["unit"] = r[by[0]].astype(str) if by else "clinic"
        r["subgroup"] = r[by[1]] if len(by) > 1 else "all"
        out.append(r[PROFILE_COLUMNS])
    return pd.concat(out, ignore_index=True)


def profile(d: Data, f: Filters, st: Settings, section: str | None = None) -> None:
    groupings = (
        PROFILE_GROUPINGS[section]
        if section
        else [g for gs in PROFILE_GROUPINGS.values() for g in gs]
    )
    profile_dimensions(d, f, groupings)
    profile_dimensions(d, f.previous_period(), [])  # the tiles' change


def _ruptures(d: Data, f: Filters, st: Settings) -> pd.DataFrame:
    """The period's SRS administrations with their rupture and repair flags (the next SRS
    totals of the episode, within the repair window, from all of its sessions)."""
    s = sessions_in_view(d, f)
    x = d.sessions[d.sessions["episode_id"].isin(s["episode_id"].unique())]
    x = x[x["srs"].notna()]  # in episode and session order, as loaded
    g = x.groupby("episode_id")["srs"]
    nxt = pd.concat([g.shift(-k) for k in range(1, st.repair_window + 1)], axis=1).max(axis=1)
    rupture = (x["prev_srs"] - x["srs"]).round(4) >= st.rupture_threshold
    repaired = rupture & ((nxt - x["prev_srs"]).round(4) >= 0)
    x = x.assign(rupture=rupture, repaired=repaired)
    return x[x.index.isin(s.index)]


def ruptures(d: Data, f: Filters, st: Settings, section: str | None = None) -> None:
    x = _ruptures(d, f, st)
    x[["rupture", "repaired"]].sum()  # the clinic's (the tiles), and the previous period's
    _ruptures(d, f.previous_period(), st)[["rupture", "repaired"]].sum()
    if section in (None, "time"):
        x.groupby("month")[["rupture", "repaired"]].sum()
    if section in (None, "units"):
        x.groupby("site")[["rupture", "repaired"]].sum()
        x.groupby("therapist")[["rupture", "repaired"]].sum()
    if section in (None, "after"):
        per_ep = x.groupby("episode_id")[["rupture", "repaired"]].any()
        e = ended_in_view(episodes(d, f), f).merge(
            per_ep, left_on="episode_id", right_index=True, how="left"
        )
        e.groupby(["rupture", "repaired"])["dropout"].agg(["mean", "size"])


# each takes (data, filters, settings) and, for a page with views (bench.VIEWS), the view
PAGES: dict[str, Callable[..., None]] = {
    "overview": overview,
    "alliance": alliance,
    "dropout": dropout,
    "outcomes": outcomes,
    "therapists": therapists,
    "demographics": demographics,
    "profile": profile,
    "ruptures": ruptures,
}
