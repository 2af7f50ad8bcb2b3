"""The baseline for `python -m alliance bench`: each page computed the common Streamlit way.

Everything is loaded into pandas DataFrames once (as `st.cache_data(pd.read_sql(...))` would),
then every filter change masks and groups those frames in memory. Each page's baseline computes
that page's main aggregates (the definitions and filters of its named queries) and calls the same
statistics, but builds at most a chart or two and leaves out most tiles, the previous-period
comparisons (but on Overview) and the secondary panels: on most pages it does less work than the
page, so the ratio flatters pandas (README, Performance). tests/test_bench.py checks that its
headline figures equal the named queries' (overview_sessions, overview_episodes) and that every
page's baseline runs.
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


@dataclass(frozen=True)
class Data:
    sessions: pd.DataFrame
    episodes: pd.DataFrame
    outcomes: pd.DataFrame


def load(con) -> Data:
    """Load the facts into memory, as a typical dashboard does on start-up."""
    s = con.execute("select * from session_facts").df()
    e = con.execute("select * from episode_facts").df()
    o = con.execute("select * from episode_outcomes").df()
    return Data(s, e, o)


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


def ended_in_view(d: Data, f: Filters) -> pd.DataFrame:
    e = d.episodes
    return e[e["ended"] & _mask(e, f, "end_date")]


def outcomes_in_view(d: Data, f: Filters, measure: str) -> pd.DataFrame:
    o = d.outcomes
    return o[(o["measure"] == measure) & o["ended"] & _mask(o, f, "end_date") & (o["n_admin"] >= 2)]


def _score(s: pd.DataFrame, f: Filters) -> pd.Series:
    return s["wai"] if f.alliance_measure == "wai" else s["srs"]


def _headline(d: Data, f: Filters, st: Settings) -> dict:
    s = sessions_in_view(d, f)
    e = ended_in_view(d, f)
    o = outcomes_in_view(d, f, f.outcome_measure)
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
    _headline(d, f, st)
    _headline(d, f.previous_period(), st)
    _line(_monthly(sessions_in_view(d, f), f, st), "month", "mean_score")
    _line(_monthly_dropout(ended_in_view(d, f)), "end_month", "dropout_rate")


def alliance(d: Data, f: Filters, st: Settings) -> None:
    s = sessions_in_view(d, f)
    score = _score(s, f)
    bins = np.floor(score.dropna() / (0.1 if f.alliance_measure == "wai" else 2.0))
    bins.groupby(bins).size()
    m = _monthly(s, f, st)
    stats.xbar_chart(m["mean_score"], m["sd_score"], m["n"], None)
    g = s.assign(score=score, num=s["session_index"].clip(upper=12)).groupby("num")["score"]
    _line(g.agg(["mean", "std", "count"]).reset_index(), "num", "mean")
    drops = s[(s["prev_srs"] - s["srs"]).round(1) >= st.rupture_threshold]
    e = ended_in_view(d, f)
    had = e["episode_id"].isin(d.sessions.loc[d.sessions.index.isin(drops.index), "episode_id"])
    e.assign(had=had).groupby("had")["dropout"].agg(["mean", "size"])


def dropout(d: Data, f: Filters, st: Settings) -> None:
    e = ended_in_view(d, f)
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
    o = outcomes_in_view(d, f, f.outcome_measure)
    rc = st.reliable_change(f.outcome_measure)
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
    e = ended_in_view(d, f)
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
    o = outcomes_in_view(d, f, f.outcome_measure)
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
    e = ended_in_view(d, f)
    e.groupby(dim).agg(n=("dropout", "size"), rate=("dropout", "mean"))
    e.groupby([dim, "site"]).agg(n=("dropout", "size"), rate=("dropout", "mean"))
    o = outcomes_in_view(d, f, f.outcome_measure)
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


def profile(d: Data, f: Filters, st: Settings, section: str | None = None) -> None:
    s = sessions_in_view(d, f)
    items = ["srs_relationship", "srs_goals", "srs_approach", "srs_overall"]
    groupings = (
        PROFILE_GROUPINGS[section]
        if section
        else [g for gs in PROFILE_GROUPINGS.values() for g in gs]
    )
    columns = sorted({c for g in groupings for c in g})
    long = s.melt(id_vars=[*columns, "client_id"], value_vars=items).dropna(subset=["value"])
    for by in groupings:
        long.groupby([*by, "variable"])["value"].agg(["mean", "std", "size"])
    long.groupby("variable")["value"].agg(["mean", "std", "size"])


def ruptures(d: Data, f: Filters, st: Settings, section: str | None = None) -> None:
    s = sessions_in_view(d, f)
    eps = s["episode_id"].unique()
    x = d.sessions[d.sessions["episode_id"].isin(eps) & d.sessions["srs"].notna()]
    x = x.sort_values(["episode_id", "session_index"])
    g = x.groupby("episode_id")["srs"]
    nxt = pd.concat([g.shift(-k) for k in range(1, st.repair_window + 1)], axis=1).max(axis=1)
    rupture = (x["prev_srs"] - x["srs"]).round(4) >= st.rupture_threshold
    repaired = rupture & ((nxt - x["prev_srs"]).round(4) >= 0)
    x = x.assign(rupture=rupture, repaired=repaired)
    x[["rupture", "repaired"]].sum()  # the clinic's (the tiles)
    if section in (None, "time"):
        x.groupby("month")[["rupture", "repaired"]].sum()
    if section in (None, "units"):
        x.groupby("site")[["rupture", "repaired"]].sum()
        x.groupby("therapist")[["rupture", "repaired"]].sum()
    if section in (None, "after"):
        per_ep = x.groupby("episode_id")[["rupture", "repaired"]].any()
        e = ended_in_view(d, f).merge(per_ep, left_on="episode_id", right_index=True, how="left")
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
