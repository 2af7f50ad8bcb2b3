"""The demo clinic: a deterministic, realistic synthetic outpatient clinic.

Its structure follows ../shared/demo-parameters.md (a model, not a rule):

* therapist random effects on alliance and on outcome (therapist share of outcome variance ~5%);
* client alliance = therapist level + client level + session noise, rising slowly over sessions,
  on the SRS scale with its ceiling at 40 (mean ~36.5, SD ~3.5);
* dropout from a logistic model on early alliance (OR ~1.7 per SD lower) and age, higher for some
  racial/ethnic minority clients with an effect that varies by therapist;
* improvement = b * alliance + therapist effect + regression to the mean + noise, b chosen so that
  the observed early-SRS / ORS-improvement r is ~.28; dropouts end earlier and improve less;
* ruptures (an SRS drop, concentrated in one SRS item), most repaired; unrepaired ruptures go with
  dropout, repaired ones with a little more improvement;
* a small demographic group, small-caseload therapists, a site that opened recently, and a
  quality-improvement change partway through (Riverside's alliance rises after a training month).

Everything is vectorized with numpy: no Python loop runs per episode or per session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

PERIOD_START = dt.date(2023, 11, 1)
PERIOD_END = dt.date(2026, 10, 31)  # the demo data run "through" this date
QI_SITE = "Riverside"
QI_TRAINING_MONTH = dt.date(2025, 6, 1)  # alliance training at Riverside; effect from July on
NEW_SITE_OPENED = dt.date(2026, 3, 1)
DEMO_KEY = b"alliance-demo-clinic"  # keys the demo's pseudonyms; the demo has no real ids

BASE_SITES = ["Northside", QI_SITE, "Eastgate", "Harbor View"]
PROGRAMS = ["Adult outpatient", "Intensive outpatient", "Couples", "Child & adolescent"]
AGE_BANDS = ["<18", "18-25", "26-44", "45-64", "65+"]
AGE_P = [0.08, 0.22, 0.40, 0.24, 0.06]
GENDERS = ["female", "male", "non-binary", "unknown"]
GENDER_P = [0.58, 0.365, 0.04, 0.015]
RACES = [
    "White",
    "Black or African American",
    "Hispanic or Latino",
    "Asian",
    "Multiracial",
    "American Indian or Alaska Native",
    "Native Hawaiian or Pacific Islander",
    "unknown",
]
RACE_P = [0.55, 0.15, 0.16, 0.07, 0.035, 0.012, 0.006, 0.017]
# groups with more unilateral termination (Owen, Imel, Adelson & Rodolfa 2012)
HIGHER_DROPOUT_RACES = {1, 2, 5}

SESSIONS_PER_EPISODE = 10.0  # mean planned length before dropout / truncation


@dataclass(frozen=True)
class DemoClinic:
    """The generated tables, ready to be written by alliance.db."""

    sites: pd.DataFrame
    programs: pd.DataFrame
    therapists: pd.DataFrame
    clients: pd.DataFrame
    episodes: pd.DataFrame
    sessions: pd.DataFrame


def pseudonym(kind: str, raw: str, key: bytes = DEMO_KEY) -> str:
    """Keyed hash used for the demo's synthetic identifiers (same scheme as real imports)."""
    return hmac.new(key, f"{kind}:{raw}".encode(), hashlib.sha256).hexdigest()


def pseudonyms(kind: str, raws: Iterable[object], key: bytes = DEMO_KEY) -> list[str]:
    """`pseudonym` for many identifiers: the keyed hash state is set up once and copied."""
    base = hmac.new(key, f"{kind}:".encode(), hashlib.sha256)
    out = []
    for raw in raws:
        h = base.copy()
        h.update(str(raw).encode())
        out.append(h.hexdigest())
    return out


def therapist_codes(pseudonyms: list[str]) -> list[str]:
    """Short stable display codes ('T-4F2A'), lengthened only where a prefix collides."""
    codes: list[str] = []
    taken: set[str] = set()
    for p in pseudonyms:
        width = 4
        while f"T-{p[:width].upper()}" in taken:
            width += 1
        code = f"T-{p[:width].upper()}"
        taken.add(code)
        codes.append(code)
    return codes


def _grouped_cumsum(values: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each group (groups are contiguous runs)."""
    total = np.cumsum(values)
    lengths = np.diff(np.append(group_starts, len(values)))
    offsets = np.repeat(total[group_starts] - values[group_starts], lengths)
    return total - offsets


def _detected_ruptures(
    srs: np.ndarray, ep_of: np.ndarray, keep: np.ndarray, n_ep: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per episode: any repaired rupture (and none unrepaired); any unrepaired rupture."""
    adm = np.flatnonzero(~np.isnan(srs) & keep)
    ep, v = ep_of[adm], srs[adm]

    def shifted(k: int) -> np.ndarray:
        out = np.full(v.shape, np.nan)
        if k > 0:
            same = ep[k:] == ep[:-k]
            out[k:] = np.where(same, v[:-k], np.nan)
        else:
            same = ep[:k] == ep[-k:]
            out[:k] = np.where(same, v[-k:], np.nan)
        return out

    prev, nxt1, nxt2 = shifted(1), shifted(-1), shifted(-2)
    rupture = np.round(prev - v, 4) >= 2
    repaired = rupture & (np.round(np.fmax(nxt1, nxt2) - prev, 4) >= 0)
    unrep = np.bincount(ep[rupture & ~repaired], minlength=n_ep) > 0
    rep = (np.bincount(ep[repaired], minlength=n_ep) > 0) & ~unrep
    return rep, unrep


def _days(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def build_demo(
    sessions: int = 50_000,
    seed: int = 7,
    progress: Callable[[float, str], None] | None = None,
) -> DemoClinic:
    """Generate a clinic of about `sessions` attended sessions, deterministic for `seed`."""
    say = progress or (lambda _f, _m: None)
    rng = np.random.default_rng(seed)
    scale = max(sessions, 2_000) / 50_000

    # --- sites, therapists ------------------------------------------------------------------
    n_sites = 4 if scale <= 2 else int(min(60, round(4 * np.sqrt(scale))))
    site_names = BASE_SITES + [f"Site {i + 1}" for i in range(4, n_sites)]
    site_names.append("Westbrook (opened 2026)")
    n_sites = len(site_names)
    site_open = np.full(n_sites, _days(PERIOD_START))
    site_open[-1] = _days(NEW_SITE_OPENED)

    n_ther = max(8, int(round(40 * np.sqrt(scale))))
    # the new site gets a couple of therapists, the rest are spread over the older sites
    ther_site = rng.integers(0, n_sites - 1, n_ther)
    ther_site[-2:] = n_sites - 1
    caseload = rng.gamma(6.0, 1.0, n_ther)
    small = rng.choice(n_ther - 2, size=max(3, n_ther // 12), replace=False)
    caseload[small] *= 0.07  # part-time / recently joined: small caseloads
    ther_start = np.maximum(site_open[ther_site], _days(PERIOD_START))
    ther_start[small] = _days(PERIOD_END) - rng.integers(120, 300, small.size)
    ther_alliance = rng.normal(0.0, 0.42, n_ther)  # therapist part of the alliance (SD units)
    ther_outcome = rng.normal(0.0, 0.95, n_ther)  # therapist effect on ORS change, not via alliance
    ther_minority = rng.normal(0.0, 0.35, n_ther)  # therapist-varying minority dropout gap
    ther_repair = rng.normal(0.0, 0.6, n_ther)  # therapists differ in repairing ruptures

    # --- episodes and clients -------------------------------------------------------------------
    say(0.05, "Drawing episodes and clients")
    n_ep = int(round(sessions / 8.3))
    ep_ther = rng.choice(n_ther, size=n_ep, p=caseload / caseload.sum())
    window_start = ther_start[ep_ther]
    window_end = _days(PERIOD_END) - 3
    # episodes start uniformly in the therapist's active window, a little growth over time
    u = rng.random(n_ep) ** 0.9
    ep_start = (window_start + u * (window_end - window_start)).astype(np.int64)
    ep_site = ther_site[ep_ther]

    age_band = rng.choice(len(AGE_BANDS), size=n_ep, p=AGE_P)
    gender = rng.choice(len(GENDERS), size=n_ep, p=GENDER_P)
    race = rng.choice(len(RACES), size=n_ep, p=RACE_P)
    program = rng.choice(3, size=n_ep, p=[0.76, 0.13, 0.11])
    program[age_band == 0] = 3

    # about 7% of clients come back for a second episode (same demographics)
    client = np.arange(n_ep)
    returning = rng.random(n_ep) < 0.07
    earlier = rng.integers(0, n_ep, n_ep)
    ok = returning & (ep_start[earlier] + 240 < ep_start) & (program[earlier] != 3)
    client[ok] = client[earlier[ok]]
    gender[ok], race[ok] = gender[earlier[ok]], race[earlier[ok]]

    # --- alliance, dropout, length ------------------------------------------------------------
    say(0.15, "Modelling alliance and dropout")
    client_alliance = rng.normal(0.0, 0.9, n_ep)
    minority = np.isin(race, list(HIGHER_DROPOUT_RACES))
    client_alliance -= 0.08 * minority
    latent = ther_alliance[ep_ther] + client_alliance
    logit = (
        -1.86
        - 0.56 * latent
        + np.select([age_band == 1, age_band == 0, age_band == 4], [0.45, 0.25, -0.35], 0.0)
        + minority * (0.30 + ther_minority[ep_ther])
    )
    dropout = rng.random(n_ep) < 1 / (1 + np.exp(-logit))
    planned_len = 1 + rng.negative_binomial(1.6, 1.6 / (1.6 + SESSIONS_PER_EPISODE - 1), n_ep)
    planned_len = np.minimum(planned_len, 60)
    drop_len = np.maximum(1, np.ceil(planned_len * rng.uniform(0.15, 0.7, n_ep))).astype(int)
    length = np.where(dropout, drop_len, planned_len)
    other_end = (~dropout) & (rng.random(n_ep) < 0.11)

    # --- sessions ------------------------------------------------------------------------------
    say(0.3, "Laying out sessions")
    n_s = int(length.sum())
    ep_of = np.repeat(np.arange(n_ep), length)
    starts = np.concatenate([[0], np.cumsum(length)[:-1]])
    idx = np.arange(n_s) - np.repeat(starts, length)  # 0-based session index in its episode
    gap = rng.choice([7, 7, 7, 7, 14, 14, 21, 28], size=n_s) + rng.integers(-1, 2, n_s)
    gap[starts] = 0
    day = ep_start[ep_of] + _grouped_cumsum(gap, starts)
    keep = day <= _days(PERIOD_END)
    # an episode still running at the end of the period is open (no end reason yet)
    n_kept = np.bincount(ep_of[keep], minlength=n_ep)
    truncated = n_kept < length
    end_reason = np.where(dropout, "dropout", np.where(other_end, "other", "planned")).astype(
        object
    )
    end_reason[truncated] = None

    # ruptures: an SRS drop of 3-7 points at a session after the first
    rupture = (idx > 0) & (rng.random(n_s) < 0.035 + 0.02 * (latent[ep_of] < -0.8))
    repair_p = 1 / (1 + np.exp(-(0.9 + ther_repair[ep_ther[ep_of]])))
    repaired = rupture & (rng.random(n_s) < repair_p)
    # dropouts often leave after an unrepaired rupture near their last session
    last = np.append(starts[1:] - 1, n_s - 1)
    leave_rupture = dropout & (length > 1) & (rng.random(n_ep) < 0.35)
    rupture[last[leave_rupture]] = True
    repaired[last[leave_rupture]] = False
    drop_size = rng.uniform(3.0, 7.0, n_s) * rupture
    unrepaired_offset = _grouped_cumsum(drop_size * (rupture & ~repaired) * 0.7, starts)
    transient = drop_size * repaired

    month = (day - _days(PERIOD_START)) / 30.44
    qi = (ep_site[ep_of] == 1) & (day >= _days(QI_TRAINING_MONTH) + 30)
    qi_ramp = np.clip((day - _days(QI_TRAINING_MONTH) - 30) / 90, 0, 1) * 0.45 * qi
    srs_latent = (
        latent[ep_of] + 0.11 * np.log1p(idx) + qi_ramp - 0.002 * month + rng.normal(0.0, 0.5, n_s)
    )
    srs_raw = 37.35 + 3.3 * srs_latent - transient - unrepaired_offset
    srs = np.round(np.clip(srs_raw, 0, 40), 1)

    # SRS items at the sites that record item-level scores (relationship highest, approach lowest)
    say(0.45, "Scoring alliance items")
    item_sites = np.isin(ep_site[ep_of], [0, 1]) | (ep_site[ep_of] >= 4)
    dev = np.column_stack(
        [
            0.35 + rng.normal(0, 0.25, n_s),
            0.0 + rng.normal(0, 0.25, n_s),
            -0.35 + rng.normal(0, 0.25, n_s),
            0.0 + rng.normal(0, 0.2, n_s),
        ]
    )
    dev -= dev.mean(axis=1, keepdims=True)
    # a rupture shows mostly in one dimension: approach > goals > relationship
    which = rng.choice(3, size=n_s, p=[0.25, 0.3, 0.45])
    bump = np.zeros((n_s, 4))
    at_rupture = transient + (rupture & ~repaired) * 0.7 * drop_size
    bump[np.arange(n_s), which] = at_rupture * 0.5
    room = np.clip((40 - srs) / 4, 0, 1)[:, None]
    items = np.clip(srs[:, None] / 4 + dev * room - bump + bump.sum(1, keepdims=True) / 4, 0, 10)
    items = np.round(items, 1)
    srs_given = np.where(item_sites, np.round(items.sum(axis=1), 1), srs)
    srs_admin = rng.random(n_s) < 0.9
    srs_given = np.where(srs_admin, srs_given, np.nan)
    items = np.where((item_sites & srs_admin)[:, None], items, np.nan)

    # WAI-SR every third session for IOP episodes and at Eastgate
    say(0.55, "Scoring WAI-SR")
    wai_eps = (program == 1) | (ep_site == 2)
    wai_at = wai_eps[ep_of] & (idx % 3 == 2)
    z = 0.62 * (srs_latent - 0.3 * (transient + unrepaired_offset) / 3.3) + rng.normal(0, 0.62, n_s)
    sub_offset = {"task": -0.08, "bond": 0.14, "goal": -0.02}
    sub_items = {"task": (1, 2, 10, 12), "bond": (3, 5, 7, 9), "goal": (4, 6, 8, 11)}
    wai = {}
    for sub, numbers in sub_items.items():
        for i in numbers:
            val = 3.86 + sub_offset[sub] + 0.72 * z + rng.normal(0, 0.45, n_s)
            wai[f"wai_{i}"] = pd.array(
                np.where(wai_at, np.clip(np.round(val), 1, 5), np.nan), dtype="Int8"
            )

    # --- outcomes ----------------------------------------------------------------------------
    say(0.65, "Modelling outcomes")
    # ruptures as the dashboard detects them (metrics.md: a drop of >= 2 from the previous SRS,
    # repaired when one of the next two SRS is back at or above the pre-rupture level): the
    # outcome link is tied to these, so repaired ruptures go with more improvement (r ~ .25,
    # Safran, Muran & Eubanks-Carter 2011) and unrepaired ones with less
    ep_det_rep, ep_det_unrep = _detected_ruptures(srs_given, ep_of, keep, n_ep)
    intake = np.clip(rng.normal(19.0, 6.5, n_ep), 1, 39)
    improve = (
        5.6
        + 2.7 * ther_alliance[ep_ther]
        + 1.65 * client_alliance
        + ther_outcome[ep_ther]
        + 0.30 * (19.0 - intake)
        + 1.6 * ep_det_rep
        - 1.0 * ep_det_unrep
        + rng.normal(0.0, 4.8, n_ep)
    )
    realized = np.where(dropout, 0.35 * drop_len / planned_len, 1.0)
    span = np.maximum(length - 1, 1)
    frac = (1 - np.exp(-idx / 3.0)) / (1 - np.exp(-span[ep_of] / 3.0))
    ors_true = intake[ep_of] + improve[ep_of] * realized[ep_of] * frac
    ors = np.round(np.clip(ors_true + rng.normal(0, 2.2, n_s), 0, 40), 1)
    ors = np.where(rng.random(n_s) < 0.93, ors, np.nan)
    uses_phq = (program != 2) & (ep_site != 3)
    phq_off = rng.normal(0, 2.6, n_ep)
    gad_off = rng.normal(0, 2.6, n_ep)
    phq = np.clip(
        np.round(15.2 - 0.72 * (ors_true - 19) + phq_off[ep_of] + rng.normal(0, 2.2, n_s)), 0, 27
    )
    gad = np.clip(
        np.round(13.0 - 0.58 * (ors_true - 19) + gad_off[ep_of] + rng.normal(0, 2.0, n_s)), 0, 21
    )
    phq_at = uses_phq[ep_of] & (rng.random(n_s) < 0.85)
    gad_at = uses_phq[ep_of] & (rng.random(n_s) < 0.8)

    # --- tables ------------------------------------------------------------------------------
    say(0.75, "Assembling tables")
    ther_pseudo = [pseudonym("therapist", f"demo-{i}") for i in range(n_ther)]
    therapists = pd.DataFrame(
        {
            "therapist_id": np.arange(n_ther, dtype=np.int32),
            "pseudonym": ther_pseudo,
            "code": therapist_codes(ther_pseudo),
        }
    )
    used_clients = np.unique(client)
    clients = pd.DataFrame(
        {
            "client_id": used_clients.astype(np.int32),
            "pseudonym": pseudonyms("client", (f"demo-{c}" for c in used_clients)),
        }
    )
    ages = np.array(AGE_BANDS, dtype=object)
    episodes = pd.DataFrame(
        {
            "episode_id": np.arange(n_ep, dtype=np.int32),
            "client_id": client.astype(np.int32),
            "pseudonym": pseudonyms("episode", (f"demo-{e}" for e in range(n_ep))),
            "program_id": program.astype(np.int32),
            "age_band": ages[age_band],
            "gender": np.array(GENDERS, dtype=object)[gender],
            "race_ethnicity": np.array(RACES, dtype=object)[race],
            "end_reason": end_reason,
        }
    )
    k = keep
    sessions_df = pd.DataFrame(
        {
            "session_id": np.arange(int(k.sum()), dtype=np.int64),
            "episode_id": ep_of[k].astype(np.int32),
            "therapist_id": ep_ther[ep_of][k].astype(np.int32),
            "site_id": ep_site[ep_of][k].astype(np.int32),
            # days since 1970-01-01 as datetime64 (not Python date objects: 10x faster to
            # build and to write); stored as DATE by the insert
            "session_date": day[k].astype("datetime64[D]").astype("datetime64[s]"),
            "session_number": (idx[k] + 1).astype(np.int16),
            "srs_total": srs_given[k],
            "srs_relationship": items[k, 0],
            "srs_goals": items[k, 1],
            "srs_approach": items[k, 2],
            "srs_overall": items[k, 3],
            **{name: col[k] for name, col in wai.items()},
            "ors_total": ors[k],
            "phq9_total": pd.array(np.where(phq_at, phq, np.nan)[k], dtype="Int8"),
            "gad7_total": pd.array(np.where(gad_at, gad, np.nan)[k], dtype="Int8"),
        }
    )
    sites = pd.DataFrame({"site_id": np.arange(n_sites, dtype=np.int32), "name": site_names})
    programs = pd.DataFrame({"program_id": np.arange(4, dtype=np.int32), "name": PROGRAMS})
    say(0.8, "Tables ready")
    return DemoClinic(sites, programs, therapists, clients, episodes, sessions_df)
