"""Who may see what: roles from a roles file, resolved for a signed-in user.

Roles (enforced where data is fetched: `allowed_sites` goes into every query's filter macro and
`therapist_level=False` makes therapist-level views run no therapist query at all):

* director   — everything: all sites, therapist-level views, import, settings, audit log;
* supervisor — their sites only, therapist-level views, exports;
* viewer     — all sites, clinic-level views only (no therapist-level data), exports.

The roles file (TOML; `ALLIANCE_ROLES` or `.streamlit/roles.toml`) maps e-mail addresses or
identity-provider groups to roles::

    [[rule]]
    email = "director@clinic.example"
    role = "director"

    [[rule]]
    group = "north-supervisors"
    role = "supervisor"
    sites = ["Northside"]

    [default]          # optional: role for any other signed-in user; omit to deny access
    role = "viewer"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLE_NAMES = ("director", "supervisor", "viewer")


@dataclass(frozen=True)
class Role:
    name: str
    sites: tuple[str, ...] | None = None  # None = every site
    therapist_level: bool = True
    can_import: bool = False
    can_edit_settings: bool = False
    can_view_audit: bool = False
    can_export: bool = True

    @property
    def allowed_sites(self) -> list[str] | None:
        return list(self.sites) if self.sites is not None else None


DIRECTOR = Role("director", None, True, True, True, True)
LOCAL = Role("local", None, True, True, True, True)  # no sign-in configured: single user


def make_role(name: str, sites: list[str] | None = None) -> Role:
    if name == "director":
        return DIRECTOR
    if name == "supervisor":
        # a supervisor without listed sites sees no site rather than every site
        return Role("supervisor", tuple(sites or ()), therapist_level=True)
    if name == "viewer":
        return Role("viewer", None, therapist_level=False)
    raise ValueError(f"unknown role {name!r}; expected one of {ROLE_NAMES}")


def roles_path() -> Path:
    env = os.environ.get("ALLIANCE_ROLES")
    return Path(env) if env else ROOT / ".streamlit" / "roles.toml"


def load_rules(path: Path | None = None) -> dict:
    path = path or roles_path()
    if not path.is_file():
        return {}
    with open(path, "rb") as fh:
        config = tomllib.load(fh)
    for rule in config.get("rule", []):
        make_role(rule.get("role", ""), rule.get("sites"))  # validate early
    return config


def resolve_role(user: Mapping[str, object], config: Mapping) -> Role | None:
    """The role for a signed-in user (e-mail and/or groups claim), or None = no access.

    The first matching rule wins; e-mail matching is case-insensitive.
    """
    email = str(user.get("email") or "").strip().lower()
    groups_claim = user.get("groups") or []
    groups = {str(g) for g in groups_claim} if isinstance(groups_claim, list | tuple) else set()
    for rule in config.get("rule", []):
        by_email = rule.get("email") and str(rule["email"]).strip().lower() == email and email
        by_group = rule.get("group") and rule["group"] in groups
        if by_email or by_group:
            return make_role(rule["role"], rule.get("sites"))
    default = config.get("default")
    if default and default.get("role"):
        return make_role(default["role"], default.get("sites"))
    return None
