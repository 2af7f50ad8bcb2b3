"""Small helpers shared by the views: the privacy step, subtitles, standard sentences."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from alliance import privacy
from alliance.charts import wrap_subtitle
from alliance.panel import Context

CORRELATION_NOTE = "An association, not a cause: other differences between clients may explain it."
SMALL_N_NOTE = "Wide intervals mean small numbers: differences inside them are not findings."
DEMO_NOTE = "Demo data: a synthetic clinic, not real clients."


def protect(
    ctx: Context,
    df: pd.DataFrame,
    *,
    value_cols: Sequence[str] | None = None,
    partition_cols: Sequence[str] = (),
    complementary: bool = True,
) -> pd.DataFrame:
    """The one privacy step every aggregate passes before it is shown or exported."""
    return privacy.suppress(
        df,
        policy=ctx.policy,
        n_col="n_clients",
        value_cols=value_cols,
        partition_cols=partition_cols,
        complementary=complementary,
    )


def subtitle(ctx: Context, *parts: str, n_text: str | None = None) -> str:
    """measure · definition · period and filters · n."""
    items = [p for p in parts if p]
    items.append(ctx.filters.describe())
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


def any_withheld(df: pd.DataFrame) -> bool:
    return "suppressed" in df and bool(df["suppressed"].any())


def srs_cutoff_text(ctx: Context) -> str:
    return f"below cutoff = SRS total < {ctx.settings.srs_cutoff:g}"
