"""Who may see what: roles from a roles file, resolved for a signed-in user.

Roles (enforced where data is fetched: `allowed_sites` goes into every query's filter macro and
`therapist_level=False` makes therapist-level views run no therapist query at all):

* director   — everything: all sites, therapist-level views, import, settings, audit log;
* supervisor — their sites only (a non-empty `sites` list; a roles file that gives a supervisor
  no sites is refused at start), therapist-level views, exports;
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
        """None = every site; a list (possibly empty: no site) = only those."""
        return list(self.sites) if self.sites is not None else None


DIRECTOR = Role("director", None, True, True, True, True)
LOCAL = Role("local", None, True, True, True, True)  # no sign-in configured: single user


class RolesError(ValueError):
    """The roles file cannot be used; the message says which rule and what to change."""


def make_role(name: str, sites: list[str] | tuple[str, ...] | None = None) -> Role:
    if name == "director":
        return DIRECTOR
    if name == "supervisor":
        # a supervisor without listed sites sees no site rather than every site: `()` is
        # "no site", never "all" (load_rules refuses such a rule before anyone signs in)
        return Role("supervisor", tuple(sites or ()), therapist_level=True)
    if name == "viewer":
        return Role("viewer", None, therapist_level=False)
    raise RolesError(f"unknown role {name!r}; expected one of {', '.join(ROLE_NAMES)}")


def roles_path() -> Path:
    env = os.environ.get("ALLIANCE_ROLES")
    return Path(env) if env else ROOT / ".streamlit" / "roles.toml"


def _rule_name(rule: Mapping, number: int | None) -> str:
    """How a person finds the rule in the file: 'rule 2 (group "north-supervisors")'."""
    where = "the [default] rule" if number is None else f"rule {number}"
    who = [f'{key} "{rule[key]}"' for key in ("email", "group") if rule.get(key)]
    return f"{where} ({', '.join(who)})" if who else where


def _check_rule(rule: object, number: int | None, path: Path) -> None:
    """Raise RolesError, naming the rule, if it cannot be applied as written."""
    name = "the [default] rule" if number is None else f"rule {number}"
    if not isinstance(rule, Mapping):
        raise RolesError(f"The roles file {path}: {name} is not a table of settings.")
    name = _rule_name(rule, number)
    role = rule.get("role")
    if role not in ROLE_NAMES:
        raise RolesError(
            f"The roles file {path}: {name} has an unknown role {role!r}; the role must be "
            f"one of {', '.join(ROLE_NAMES)}."
        )
    sites = rule.get("sites")
    if role == "supervisor":
        if not isinstance(sites, list) or not sites:
            raise RolesError(
                f"The roles file {path}: {name} makes a supervisor but gives no sites. A "
                'supervisor needs a non-empty list of sites, such as sites = ["Northside"]; '
                "the dashboard does not start until the rule is corrected."
            )
        if not all(isinstance(s, str) and s.strip() for s in sites):
            raise RolesError(
                f"The roles file {path}: {name} lists a site that is not a name in quotes; "
                'write the sites as a list of names, such as sites = ["Northside"].'
            )
    elif sites is not None:
        raise RolesError(
            f"The roles file {path}: {name} gives sites to the role {role}, which sees every "
            "site; remove the sites, or make the role a supervisor."
        )


def load_rules(path: Path | None = None) -> dict:
    """The roles file, checked: raises RolesError (a plain sentence naming the rule) when a
    rule cannot be applied as written, e.g. a supervisor without sites."""
    path = path or roles_path()
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RolesError(f"The roles file {path} is not valid TOML: {exc}.") from exc
    except OSError as exc:
        raise RolesError(f"The roles file {path} cannot be read: {exc.strerror}.") from exc
    rules = config.get("rule", [])
    if not isinstance(rules, list):
        raise RolesError(f"The roles file {path}: write each rule under its own [[rule]].")
    for number, rule in enumerate(rules, start=1):
        _check_rule(rule, number, path)
    default = config.get("default")
    if default is not None:
        _check_rule(default, None, path)
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
