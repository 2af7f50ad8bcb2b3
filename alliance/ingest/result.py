"""What an import found and did: per file, problems, counts, the clinic's name lists, and the
summary the command prints. Plain data: the command line and the Data page present it."""

from __future__ import annotations

from dataclasses import dataclass, field

from alliance.ingest import names
from alliance.ingest.problems import Problem


@dataclass
class FileSummary:
    name: str
    fmt: str
    fingerprint: str
    rows: int = 0
    blank_rows: int = 0
    recognized: dict[str, str] = field(default_factory=dict)  # header text -> contract column
    identifiers: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    files: list[FileSummary]
    problems: list[Problem]  # the first `problem_limit`, in file/row order
    problem_count: int = 0
    rows_read: int = 0
    rows_rejected: int = 0
    valid_rows: int = 0
    sessions: int = 0  # distinct sessions in the valid rows
    episodes: int = 0
    clients: int = 0
    therapists: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # plan: added/updated/unchanged ...
    dry_run: bool = False
    written: bool = False
    dataset_kind_before: str = "none"
    replaced_demo: bool = False
    rejects_written: int = 0
    seconds: float = 0.0

    skip_invalid: bool = False
    # the clinic's lists of sites and programs (names.py)
    new_names: list[Problem] = field(default_factory=list)  # off the list, at their first row
    unlisted: dict[str, list[str]] = field(default_factory=dict)  # the same, column -> names
    first_list: dict[str, list[str]] = field(default_factory=dict)  # names that start a list
    accept_new_names: bool = False

    @property
    def needs_confirmation(self) -> bool:
        """Names off the clinic's list stop the import until they are confirmed."""
        return bool(self.new_names) and not self.accept_new_names

    @property
    def ok_once_confirmed(self) -> bool:
        """Importable if the new names are confirmed (the Data page's checkbox)."""
        return self.valid_rows > 0 and (self.problem_count == 0 or self.skip_invalid)

    @property
    def ok(self) -> bool:
        """Imported (or, for a dry run, importable)."""
        return self.ok_once_confirmed and not self.needs_confirmation

    def names_added(self) -> dict[str, list[str]]:
        """Names that this import adds to the clinic's lists (column -> names)."""
        added = {col: list(found) for col, found in self.first_list.items() if found}
        if self.accept_new_names:
            for col, found in self.unlisted.items():
                added.setdefault(col, []).extend(found)
        return added

    @property
    def file_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.row is None]

    @property
    def needs_replace_demo(self) -> bool:
        return self.dataset_kind_before == "demo"

    @property
    def identifiers(self) -> list[str]:
        return sorted({h for f in self.files for h in f.identifiers})

    @property
    def ignored(self) -> list[str]:
        return sorted({h for f in self.files for h in f.ignored})

    def summary_lines(self) -> list[str]:
        c = self.counts
        rate = self.rows_read / self.seconds if self.seconds else 0
        would = "would be " if self.dry_run else ""
        lines = [
            f"rows read            {self.rows_read:,}",
            f"sessions added       {c.get('sessions_added', 0):,}",
            f"sessions updated     {c.get('sessions_updated', 0):,}",
            f"sessions unchanged   {c.get('sessions_unchanged', 0):,}",
            f"episodes             {c.get('episodes_added', 0):,} {would}added, "
            f"{c.get('episodes_updated', 0):,} {would}updated",
            f"identifiers dropped  {', '.join(self.identifiers) or 'none'}",
            f"columns ignored      {', '.join(self.ignored) or 'none'}",
        ]
        if self.rows_rejected:
            lines.append(f"rows rejected        {self.rows_rejected:,}")
        if self.replaced_demo:
            lines.append("demo clinic          removed")
        for col, found in self.names_added().items():
            what = "new list" if self.first_list.get(col) else "added"
            lines.append(f"{names.PLURAL[col] + ' (' + what + ')':<20} {', '.join(found)}")
        lines.append(f"time                 {self.seconds:.1f} s ({rate:,.0f} rows/s)")
        return lines
