"""A small hand-built clinic whose answers the view tests work out by hand: nine episodes of
eight clients, three therapists, two sites (EPISODES), in 2025 (YEAR)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alliance import db
from alliance.filters import Filters

D = dt.date
YEAR = Filters(first_month=D(2025, 1, 1), last_month=D(2025, 12, 1))

# episode: (client, therapist, site, age band, gender, race, end reason, SRS totals, ORS totals)
# therapists 1 = T-AAAA, 2 = T-BBBB, 3 = T-CCCC; sites 1 = North, 2 = South
EPISODES = {
    1: (1, 1, 1, "26-44", "female", "White", "planned", [30, 34, 38, 40], [15, 26]),
    2: (2, 1, 1, "18-25", "male", "Asian", "dropout", [36, 33], [20, 22]),
    3: (3, 1, 2, "26-44", "female", "White", "dropout", [32], [18]),
    4: (4, 2, 2, "45-64", "female", "Asian", "planned", [38, 39, 40], [22, 30]),
    5: (5, 2, 2, "45-64", "male", "White", "other", [35, 37], [24, 23]),
    6: (6, 3, 1, "26-44", "female", "Black or African American", "dropout", [28, 30], [10, 12]),
    7: (7, 3, 1, "26-44", "male", "White", "planned", [39, 40], [20, 28]),
    8: (1, 3, 1, "26-44", "female", "White", None, [37], []),  # open: no dropout/outcome
    9: (8, 2, 1, "65+", "female", "Black or African American", "planned", [None, 38], [21, 27]),
}


def build_small_clinic(path: Path) -> None:
    """Nine episodes of eight clients, three therapists, two sites (see EPISODES)."""
    with db.writer(path, fresh=True) as con:
        con.execute("insert into sites values (1, 'North'), (2, 'South')")
        con.execute("insert into programs values (1, 'Adult outpatient')")
        con.execute(
            "insert into therapists values (1, 'p1', 'T-AAAA'), (2, 'p2', 'T-BBBB'), "
            "(3, 'p3', 'T-CCCC')"
        )
        con.execute("insert into clients select i, 'c' || i from range(1, 9) t(i)")
        session_id = 0
        for ep, (client, ther, site, age, gender, race, end, srs, ors) in EPISODES.items():
            con.execute(
                "insert into episodes values (?, ?, ?, 1, ?, ?, ?, ?)",
                [ep, client, f"e{ep}", age, gender, race, end],
            )
            start = D(2025, 1, 6) + dt.timedelta(days=3 * ep)
            for i in range(max(len(srs), len(ors))):
                session_id += 1
                con.execute(
                    "insert into sessions (session_id, episode_id, therapist_id, site_id, "
                    "session_date, srs_total, ors_total) values (?, ?, ?, ?, ?, ?, ?)",
                    [
                        session_id,
                        ep,
                        ther,
                        site,
                        start + dt.timedelta(weeks=i),
                        srs[i] if i < len(srs) else None,
                        ors[i] if i < len(ors) else None,
                    ],
                )
        db.set_meta(con, "dataset_kind", "clinic")
        db.rebuild_facts(con)
