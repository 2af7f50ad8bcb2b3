"""Small helpers shared by the views: the privacy step, subtitles, standard sentences."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from alliance import privacy, protected
from alliance.charts import GREY, figure_edit, wrap_subtitle
from alliance.charts.text import chart_text, chart_texts  # noqa: F401 (re-exported)
from alliance.panel import Context

CORRELATION_NOTE = "An association, not a cause: other differences between clients may explain it."
SMALL_N_NOTE = "Wide intervals mean small numbers: differences inside them are not findings."
DEMO_NOTE = "Demo data: a synthetic clinic, not real clients."


def gather(*parts: Callable[[], Any]) -> list[Any]:
    """Run a view's independent parts (each its own queries, statistics and figure) side by
    side and return their results in the order given.

    DuckDB lets go of Python's lock while it runs a query, so one part's query runs while
    another part builds its figure in Python; each query has its own cursor
    (alliance/queries.py). Results and errors are exactly those of calling the parts one after
    another. `ALLIANCE_VIEW_THREADS=1` runs them one after another (for debugging).
    """
    workers = int(os.environ.get("ALLIANCE_VIEW_THREADS", "3"))
    if workers <= 1 or len(parts) <= 1:
        return [part() for part in parts]
    with ThreadPoolExecutor(max_workers=min(workers, len(parts))) as pool:
        futures = [pool.submit(part) for part in parts]
        return [f.result() for f in futures]


def chosen_sections(sections: Mapping[str, str], section: str | None) -> list[str]:
    """The sections a page's build makes: the one shown (the page shows one at a time), or
    every one for section=None (a report)."""
    if section is None:
        return list(sections)
    if section not in sections:
        raise ValueError(f"unknown section {section!r}")
    return [section]


def protect(
    ctx: Context,
    df: pd.DataFrame,
    *,
    value_cols: Sequence[str] | None = None,
    partition_cols: Sequence[str] = (),
    complementary: bool = True,
) -> pd.DataFrame:
    """The threshold step for a table without cell keys (counts shown exactly). Cell keys,
    if the query returned any, are dropped: they must never be shown (with them the noise of
    `protect_counts` could be undone)."""
    return privacy.suppress(
        df.drop(columns=protected.key_columns(df)),
        policy=ctx.policy,
        n_col="n_clients",
        value_cols=value_cols,
        partition_cols=partition_cols,
        complementary=complementary,
    )


def protect_counts(
    ctx: Context,
    df: pd.DataFrame,
    *,
    counts: Sequence[str],
    means: Sequence[protected.Mean] = (),
    rates: Sequence[protected.Rate] = (),
    value_cols: Sequence[str] | None = None,
    partition_cols: Sequence[str] = (),
    complementary: bool = True,
    n_key_from: str | None = None,
    overlapping: bool = False,
    also_partition_by: Sequence[Sequence[str]] = (),
    clients_col: privacy.ClientSets | None = None,
) -> pd.DataFrame:
    """The protected-statistics step for a table whose counts come with their cell keys:
    threshold, numerator rule, complementary suppression and cell-key noise
    (alliance/protected.py). The key columns never leave it."""
    return protected.protect_table(
        df,
        policy=ctx.policy,
        params=ctx.noise,
        counts=counts,
        means=means,
        rates=rates,
        value_cols=value_cols,
        partition_cols=partition_cols,
        complementary=complementary,
        n_key_from=n_key_from,
        overlapping=overlapping,
        also_partition_by=also_partition_by,
        clients_col=clients_col,
    )


def protect_comparison(
    ctx: Context,
    df: pd.DataFrame,
    *,
    first: str,
    second: str,
    value_cols: Sequence[str],
    partition_cols: Sequence[str] = (),
    complementary: bool = True,
) -> pd.DataFrame:
    """The privacy step for rows that compare two groups of clients (e.g. dropouts with other
    endings, a group with the rest of a therapist's caseload).

    `first` and `second` hold the two groups' distinct-client counts. A comparison describes
    both groups, so a row is judged by the smaller group that has clients: it is withheld when
    either group has 1 .. k-1 clients, or when one group is empty and the other has 1 .. k-1
    (nothing is compared then, but the row still describes those clients). The returned
    ``n_clients`` is the number of clients behind the row (first + second), ``<NA>`` where
    withheld; `first` and `second` themselves are withheld with the row.
    """
    a = pd.to_numeric(df[first]).to_numpy(dtype="int64")
    b = pd.to_numeric(df[second]).to_numpy(dtype="int64")
    judged = np.where((a > 0) & (b > 0), np.minimum(a, b), a + b)
    safe = protect(
        ctx,
        df.assign(n_clients=judged),
        value_cols=[*value_cols, first, second],
        partition_cols=partition_cols,
        complementary=complementary,
    )
    total = pd.Series(a + b, index=df.index, dtype="Int64")
    safe["n_clients"] = total.mask(safe["suppressed"].to_numpy(dtype=bool))
    return safe


def n_text(ctx: Context, count: int | float, unit: str, n_clients: int | float) -> str:
    """'n = 1,378 ended episodes' for a subtitle or tile, or the privacy label.

    `n_clients` is the number of distinct clients the total describes (a lower bound where the
    exact number is not known: the total is then withheld when in doubt). A total describing
    1 .. k-1 clients is withheld like any other cell: "n < 11 clients". A total shown beside
    cells that add up to it must come with cells protected as one partition (complementary
    suppression), so that no withheld cell can be recovered by subtraction.
    """
    if 0 < n_clients < ctx.policy.k:
        return f"{ctx.policy.label} clients"
    return f"n = {int(count):,} {unit}"


# Markdown that text from the data (site, program and group names, a clinic name) could carry.
# Two kinds: syntax the markdown parser reads (links and images [..](..), autolinks <..>, HTML
# tags and entities, emphasis * _ ~, code `, math $, Streamlit's directives :red[..], block
# syntax at the start # > - + = 1.), defused with backslash escapes and &lt; / &amp;; and
# patterns Streamlit's markdown finds in the text after parsing, where escapes no longer count
# (bare URLs http:// https:// www., e-mail addresses x@y, icons :material/x:, emoji :smile:),
# broken by an invisible WORD JOINER after the ':', '@' or 'www' (checked in Chromium).
_MD_ESCAPE = re.compile(r"([\\`*_\[\]{}~$|^])")
_MD_BLOCK = re.compile(r"^([#>\-+=])")
_MD_LIST = re.compile(r"^(\d+)([.)])")
_MD_LT = re.compile(r"<(?=[A-Za-z/!?])")
_MD_AMP = re.compile(r"&(?=[#A-Za-z])")
_MD_FOUND = re.compile(r"(?i)(:|@|\bwww(?=\.))(?=\S)")
WORD_JOINER = "\u2060"


def markdown_safe(text: str | None) -> str:
    """Text for an element Streamlit renders as markdown (caption, info, metric help...) that
    shows exactly as written: no link, URL, e-mail, emphasis, HTML, icon or directive forms.

    Only what would act as markup is changed, so ordinary sentences, numbers and "n < 11" read
    the same; line breaks become spaces. Use it for any text that carries names from the data;
    plain text everywhere else (exports, reports) keeps the text as it is.
    """
    if not text:
        return ""
    out = " ".join(str(text).split())
    out = _MD_ESCAPE.sub(r"\\\1", out)
    out = _MD_AMP.sub("&amp;", out)
    out = _MD_LT.sub("&lt;", out)
    out = _MD_FOUND.sub(lambda m: m.group(1) + WORD_JOINER, out)
    out = _MD_BLOCK.sub(r"\\\1", out)
    return _MD_LIST.sub(r"\1\\\2", out)


def subtitle(ctx: Context, *parts: str, n_text: str | None = None) -> str:
    """measure · definition · period and filters · n."""
    items = [p for p in parts if p]
    items.append(chart_text(ctx.filters.describe()))
    if n_text:
        items.append(n_text)
    return wrap_subtitle(items)


def withheld_note(ctx: Context, df: pd.DataFrame) -> str:
    if "suppressed" in df and bool(df["suppressed"].any()):
        return (
            f" Cells describing fewer than {ctx.policy.k} clients are withheld "
            f'("{ctx.policy.label}"), with others where needed so they cannot be recovered.'
        )
    return ""


def mark_all_withheld(fig: go.Figure, ctx: Context, what: str) -> go.Figure:
    """Say on a chart whose every point is withheld why it is empty (instead of bare axes).

    The chart, its withheld data and its note stay (as on screen, so in exports too); the value
    axis loses its ticks, which would otherwise show a meaningless default range.
    """
    fig.add_annotation(
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        text=f"Every {what} here is withheld ({ctx.policy.label}): fewer than {ctx.policy.k} "
        "clients, or fewer than that behind a rate's events or non-events",
        font={"size": 15, "color": GREY},
    )
    figure_edit.update_yaxes(fig, showticklabels=False, showgrid=False, zeroline=False)
    return fig


def noise_note(ctx: Context) -> str:
    """The sentence a protected chart's reading carries (alliance/protected.py)."""
    return (
        f" To protect small groups, each count carries a small fixed adjustment (at most "
        f"±{ctx.noise.max_noise}) and rates and means are formed from adjusted counts, so "
        "figures may differ slightly between pages; a rate is withheld when fewer than "
        f"{ctx.policy.k} events or non-events stand behind it."
    )


def any_withheld(df: pd.DataFrame) -> bool:
    return "suppressed" in df and bool(df["suppressed"].any())


def srs_cutoff_text(ctx: Context) -> str:
    return f"below cutoff = SRS total < {ctx.settings.srs_cutoff:g}"


def too_small_notice(ctx: Context, n_clients: int) -> str:
    if n_clients == 0:
        return "No sessions match these filters. Widen the period or clear a filter."
    return (
        f"This selection describes fewer than {ctx.policy.k} clients, so no numbers are shown: "
        "with so few people, figures could identify individuals and would be too noisy to act "
        "on. Widen the period or clear a filter."
    )
