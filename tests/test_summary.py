"""`python -m alliance summary --json` agrees with an independent computation (pandas/scipy/
statsmodels over the derived facts) on the same data, and fails plainly on bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from tests.conftest import ROOT

PERIOD = ("2025-01", "2026-06")


@pytest.fixture(scope="module")
def summary(demo_db) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "alliance",
            "summary",
            "--db",
            str(demo_db),
            "--from",
            PERIOD[0],
            "--to",
            PERIOD[1],
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def facts(demo_con):
    s = demo_con.execute("select * from session_facts").df()
    e = demo_con.execute("select * from episode_facts").df()
    lo, hi = (
        pd.Timestamp(f"{PERIOD[0]}-01"),
        pd.Timestamp(f"{PERIOD[1]}-01") + pd.offsets.MonthBegin(1),
    )
    s = s[(s.session_date >= lo) & (s.session_date < hi)]
    ended = e[e.ended & (e.end_date >= lo) & (e.end_date < hi)]
    return s, e, ended


def test_counts_and_session_metrics(summary, facts):
    s, _, ended = facts
    assert summary["sessions"] == len(s)
    assert summary["clients"] == s.client_id.nunique()
    assert summary["episodes"] == s.episode_id.nunique()
    assert summary["mean_srs"] == pytest.approx(s.srs.mean(), abs=1e-5)
    assert summary["srs_below_cutoff_rate"] == pytest.approx((s.srs.dropna() < 36).mean(), abs=1e-5)
    assert summary["dropout_rate"] == pytest.approx(ended.dropout.mean(), abs=1e-5)


def test_alliance_dropout_statistics(summary, facts):
    _, _, ended = facts
    x = ended.dropna(subset=["early_srs"])
    a, b = x[~x.dropout].early_srs, x[x.dropout].early_srs
    pooled = np.sqrt(((len(a) - 1) * a.var() + (len(b) - 1) * b.var()) / (len(a) + len(b) - 2))
    assert summary["alliance_dropout_d"] == pytest.approx((a.mean() - b.mean()) / pooled, abs=1e-4)
    z = (x.early_srs - x.early_srs.mean()) / x.early_srs.std()
    fit = sm.Logit(x.dropout.astype(float).to_numpy(), sm.add_constant(z.to_numpy())).fit(disp=0)
    assert summary["dropout_or_per_sd_lower"] == pytest.approx(np.exp(-fit.params[1]), rel=1e-4)
    r = sps.pearsonr(x.early_srs, x.dropout.astype(float))[0]
    assert summary["dropout_point_biserial_r"] == pytest.approx(r, abs=1e-4)


def test_outcome_statistics(summary, demo_con):
    o = demo_con.execute(
        "select * from episode_outcomes where measure = 'ors' and ended and n_admin >= 2 "
        f"and end_date >= '{PERIOD[0]}-01' and end_date < date '{PERIOD[1]}-01' + interval 1 month"
    ).df()
    imp = o.last_score - o.first_score
    assert summary["reliable_improvement_rate"] == pytest.approx((imp >= 5 - 1e-9).mean(), abs=1e-5)
    assert summary["reliable_deterioration_rate"] == pytest.approx(
        (imp <= -5 + 1e-9).mean(), abs=1e-5
    )
    clinical = o.first_score < 25
    recovered = clinical & (o.last_score >= 25)
    assert summary["recovery_rate"] == pytest.approx(recovered.sum() / clinical.sum(), abs=1e-5)
    both = o.dropna(subset=["early_srs"])
    r = sps.pearsonr(both.early_srs, both.last_score - both.first_score)[0]
    assert summary["alliance_outcome_r"] == pytest.approx(r, abs=1e-4)
    lo, hi = summary["alliance_outcome_r_ci"]
    z, se = np.arctanh(r), 1 / np.sqrt(len(both) - 3)
    assert (lo, hi) == pytest.approx((np.tanh(z - 1.96 * se), np.tanh(z + 1.96 * se)), abs=1e-3)


def test_rupture_rate(summary, demo_con):
    s = demo_con.execute(
        "select * from session_facts where srs is not null and prev_srs is not null "
        f"and session_date >= '{PERIOD[0]}-01' and session_date < date '{PERIOD[1]}-01' + interval 1 month"
    ).df()
    rate = ((s.prev_srs - s.srs).round(4) >= 2).mean() * 100
    assert summary["rupture_rate_per_100"] == pytest.approx(rate, abs=1e-3)
    assert 0 < summary["repair_rate"] < 1
    assert 0 <= summary["therapist_icc_outcome"] < 0.3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from", "2025-13"], "expected YYYY-MM"),
        (["--site", "Atlantis"], "not in the data"),
        (["--from", "2026-01", "--to", "2025-01"], "after"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(demo_db, args, message):
    out = subprocess.run(
        [sys.executable, "-m", "alliance", "summary", "--db", str(demo_db), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
