"""Alliance profile numbers about therapists: each dimension's funnel (therapists' protected
means against the clinic's), and each client group's gap within a therapist's caseload,
empirical-Bayes shrunken, with the heterogeneity between therapists (the comparison's privacy
step judges a row by both groups of clients)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance import noise, protected
from alliance.metrics.profile import (
    DEMOGRAPHICS,
    LABELS,
    NOT_A_GROUP,
    SECTION_GROUPINGS,
    dimension_scores,
    dimensions,
    perturbed_dims,
    profile_table,
    protect_dims,
    therapist_labels,
)
from alliance.panel import Context
from alliance.spc import funnel, overdispersion, pooled_sd
from alliance.stats import empirical_bayes_shrink
from alliance.views.common import protect_comparison


def therapist_gaps(ctx: Context, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each demographic group's gap within each therapist's caseload, shrunken (unsuppressed).

    For therapist t and group g: raw gap = mean of t's g-episodes - mean of t's other episodes
    (episode means of the dimension). Its sampling variance is s^2 (1/n_g + 1/n_rest) with s^2
    the pooled within-cell variance, i.e. s^2 / n_eff with n_eff = 1 / (1/n_g + 1/n_rest);
    stats.empirical_bayes_shrink pulls each raw gap toward the n_eff-weighted average gap by
    tau2 / (tau2 + s^2 / n_eff), so small caseloads say little. Heterogeneity between therapists
    is Cochran's Q about the precision-weighted mean (spc.overdispersion without winsorising).

    Columns: attribute, group, dimension, therapist, n_clients (the therapist's clients with the
    dimension recorded: group_clients + rest_clients), group_clients, rest_clients, n_group,
    n_rest (episodes), raw_gap, shrunk, centre, tau, p_value. A row compares two groups of
    clients, so the privacy step judges it by both (`alliance.views.common.protect_comparison`).
    """
    cols = [
        "attribute",
        "group",
        "dimension",
        "therapist",
        "n_clients",
        "group_clients",
        "rest_clients",
        "n_group",
        "n_rest",
        "raw_gap",
        "shrunk",
        "centre",
        "tau",
        "p_value",
    ]
    if table is None:
        table = profile_table(ctx, groupings=SECTION_GROUPINGS["therapists"])
    totals = dimension_scores(ctx, "therapist", table=table).set_index(["unit", "dimension"])
    out = []
    for attr in DEMOGRAPHICS:
        cells = dimension_scores(ctx, "therapist", attr, table=table)
        cells = cells[~cells["subgroup"].isin(NOT_A_GROUP)]
        if cells.empty:
            continue
        tot = totals.reindex(pd.MultiIndex.from_frame(cells[["unit", "dimension"]]))
        n_t = tot["episodes"].to_numpy(dtype=float)
        sum_t = n_t * tot["mean_score"].to_numpy(dtype=float)
        n_g = cells["episodes"].to_numpy(dtype=float)
        n_r = n_t - n_g
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_r = (sum_t - n_g * cells["mean_score"].to_numpy(dtype=float)) / n_r
            raw = cells["mean_score"].to_numpy(dtype=float) - mean_r
            n_eff = np.where((n_g > 0) & (n_r > 0), 1 / (1 / n_g + 1 / n_r), 0.0)
        clients_all = tot["n_clients"].to_numpy(dtype=float)
        clients_group = cells["n_clients"].to_numpy(dtype=float)
        frame = pd.DataFrame(
            {
                "attribute": attr,
                "group": cells["subgroup"].to_numpy(),
                "dimension": cells["dimension"].to_numpy(),
                "therapist": cells["unit"].to_numpy(),
                "n_clients": clients_all,
                "group_clients": clients_group,
                "rest_clients": (clients_all - clients_group).clip(0),
                "n_group": n_g,
                "n_rest": n_r,
                "raw_gap": np.where(n_r > 0, raw, np.nan),
                "n_eff": n_eff,
            }
        )
        # within-cell variance of episode means, pooled per dimension (items differ in spread)
        s2_by_dim = {
            d: pooled_sd(part["sd_score"], part["episodes"]) ** 2
            for d, part in cells.groupby("dimension")
        }
        # per group and dimension (groups in order of first appearance, as a groupby with
        # sort=False iterates them): the shrunken gaps and the heterogeneity test
        raw_all, n_eff_all = frame["raw_gap"].to_numpy(), frame["n_eff"].to_numpy()
        shrunk = np.full(len(frame), np.nan)
        centre, tau, p = (np.full(len(frame), np.nan) for _ in range(3))
        order = []
        groups = frame.groupby(["group", "dimension"], sort=False).indices
        for (_, dim), idx in sorted(groups.items(), key=lambda kv: kv[1][0]):
            order.append(idx)
            s2 = s2_by_dim[dim]
            ok = n_eff_all[idx] > 0
            if ok.sum() >= 2 and np.isfinite(s2) and s2 > 0:
                y, n = raw_all[idx][ok], n_eff_all[idx][ok]
                shrunk[idx[ok]] = empirical_bayes_shrink(y, n, s2)
                centre[idx] = float(np.sum(n * y) / n.sum())
                w = n / s2
                od = overdispersion(y, float(np.sum(w * y) / w.sum()), np.sqrt(s2 / n), winsor=0)
                tau[idx], p[idx] = float(np.sqrt(od.tau2)), float(od.p_value)
        rows = np.concatenate(order)
        out.append(
            frame.drop(columns="n_eff")
            .assign(shrunk=shrunk, centre=centre, tau=tau, p_value=p)
            .iloc[rows]
        )
    if not out:
        return pd.DataFrame(columns=cols)
    df = pd.concat(out, ignore_index=True)
    for col in ("n_clients", "group_clients", "rest_clients"):
        df[col] = df[col].astype("int64")
    return df[cols]


def shown_therapist_clients(ctx: Context, scores: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """The therapist's clients with the dimension recorded (a gap row's `n_clients`) as shown:
    the count with its cell's noise (key derived from the episodes' key), withheld rows NA."""
    tot = scores[scores["grouping"] == "therapist"]
    keys = noise.derived_key(tot["episodes_cellkey"].to_numpy(dtype="float64"), "n_clients")
    shown = protected.shown_counts_of(
        tot["n_clients"].to_numpy(dtype="float64"), keys, ctx.noise, ctx.policy
    )
    lookup = pd.Series(shown, index=pd.MultiIndex.from_frame(tot[["unit", "dimension"]]))
    got = lookup.reindex(pd.MultiIndex.from_frame(rows[["therapist", "dimension"]])).to_numpy()
    out = pd.Series(got, index=rows.index).round().astype("Int64")
    return out.mask(rows["suppressed"].to_numpy(dtype=bool))


def attr_rank(s: object) -> object:
    order = list(DEMOGRAPHICS)
    return order.index(s) if s in order else s


def therapist_names(ctx: Context, by_ther: pd.DataFrame) -> dict:
    """The therapists' display names, meeting-mode letters by their largest number of episodes."""
    return therapist_labels(by_ther["unit"], ctx, by_ther.groupby("unit")["episodes"].max())


def dimension_funnels(
    ctx: Context, clinic: pd.DataFrame, by_ther: pd.DataFrame, names: dict
) -> dict | None:
    """A funnel per dimension of the therapists' protected means, or None when no dimension
    has two therapists shown.

    The target is the clinic's protected mean; the points protected means against protected
    numbers of episodes; sigma pools the SDs of the therapists shown. Returns funnels (name,
    points, limits, target, axis labels and format, as the chart takes them), tables (each
    dimension's protected rows with `therapist` and `flag`), sigmas, methods (those used),
    safe (every protected row) and clinic_shown (the clinic's protected rows).
    """
    clinic_shown = protect_dims(ctx, clinic, complementary=False)
    ref = clinic_shown[~clinic_shown["suppressed"]].set_index("dimension")
    safe = protect_dims(ctx, by_ther, partition_cols=["dimension"])
    funnels, tables, sigmas, methods = [], [], [], set()
    for d in dimensions(ctx):
        part_safe = safe[safe["dimension"] == d]
        shown = part_safe[part_safe["mean_score"].notna()]
        sigma = (
            pooled_sd(shown["sd_score"].astype(float), shown["episodes"].astype(float))
            if len(shown)
            else float("nan")
        )
        if d not in ref.index or len(shown) < 2 or not np.isfinite(sigma) or sigma <= 0:
            continue
        target = float(ref.loc[d, "mean_score"])
        pts, lim, info = funnel(
            pd.DataFrame(
                {
                    "unit": shown["unit"].map(names),
                    "n": shown["episodes"].astype(float),
                    "value": shown["mean_score"].astype(float),
                }
            ),
            kind="mean",
            target=target,
            sigma=sigma,
            method=ctx.settings.overdispersion,
        )
        funnels.append(
            {
                "name": f"“{LABELS[d]}”",
                "points": pts,
                "limits": lim,
                "target": target,
                "x_label": "Episodes",
                "y_label": "Mean item score",
                "value_format": "num2",
            }
        )
        sigmas.append(f"{sigma:.2f}")
        methods.add(info["method_used"])
        flags = pts.set_index("unit")["flag"]
        t = part_safe.assign(therapist=part_safe["unit"].map(names))
        tables.append(t.assign(flag=t["therapist"].map(flags)))
    if not funnels:
        return None
    return {
        "funnels": funnels,
        "tables": tables,
        "sigmas": sigmas,
        "methods": methods,
        "safe": safe,
        "clinic_shown": clinic_shown,
    }


def therapist_gap_rows(ctx: Context, scores: pd.DataFrame) -> dict | None:
    """The within-caseload gaps as shown, or None when there are none to compute.

    The gaps are formed from protected means and numbers of episodes (the clients stay exact:
    the comparison's privacy step judges the row by them); the clients shown are protected.
    Returns df (the unprotected gaps, for the names' order), safe (every row through the
    privacy step, `n_clients` protected), visible (the rows with a shrunken gap, with `row` =
    'Attribute: group' and display names), rows (the group rows in order), centres and
    stats_rows (one row per group and dimension), differ (those with p < .05), names.
    """
    shown_scores = perturbed_dims(ctx, scores)
    df = therapist_gaps(ctx, shown_scores)
    if df.empty:
        return None
    # a row compares the group's clients with the rest of the caseload: withheld when either
    # side has 1 .. k-1 clients, or the group is the whole caseload and has fewer than k
    safe = protect_comparison(
        ctx,
        df,
        first="group_clients",
        second="rest_clients",
        value_cols=["n_group", "n_rest", "raw_gap", "shrunk", "centre", "tau", "p_value"],
        partition_cols=["attribute", "group", "dimension"],
    )
    safe["n_clients"] = shown_therapist_clients(ctx, shown_scores, safe)
    visible = safe[safe["shrunk"].notna()]
    out = {"df": df, "safe": safe, "visible": visible}
    if visible.empty:
        return out
    names = therapist_labels(df["therapist"], ctx, df.groupby("therapist")["n_rest"].max())
    visible = visible.assign(
        row=visible["attribute"].map(DEMOGRAPHICS) + ": " + visible["group"],
        therapist=visible["therapist"].map(names),
    )
    pairs = visible.drop_duplicates(["attribute", "group"])  # one row label per pair
    rows = list(
        dict.fromkeys(
            pairs.sort_values(["attribute", "group"], key=lambda s: s.map(attr_rank))["row"]
        )
    )
    centres = visible.drop_duplicates(["row", "dimension"])[["row", "dimension", "centre"]]
    stats_rows = visible.drop_duplicates(["row", "dimension"])
    return {
        **out,
        "visible": visible,
        "names": names,
        "rows": rows,
        "centres": centres,
        "stats_rows": stats_rows,
        "differ": stats_rows[stats_rows["p_value"] < 0.05],
    }
