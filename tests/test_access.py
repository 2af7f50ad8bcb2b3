"""Sign-in and roles: enforced where data is fetched, and under crafted URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alliance import access, audit
from tests.conftest import ROOT

ROLES = """
[[rule]]
email = "Director@Clinic.example"
role = "director"

[[rule]]
group = "north-supervisors"
role = "supervisor"
sites = ["Northside"]

[[rule]]
email = "viewer@clinic.example"
role = "viewer"
"""
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-cookie-secret",
    "client_id": "dashboard",
    "client_secret": "secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


def test_resolve_role_by_email_group_and_default(tmp_path: Path):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES)
    config = access.load_rules(path)
    assert access.resolve_role({"email": "director@clinic.example"}, config).name == "director"
    sup = access.resolve_role({"email": "x@y", "groups": ["north-supervisors"]}, config)
    assert sup.name == "supervisor" and sup.allowed_sites == ["Northside"]
    viewer = access.resolve_role({"email": "viewer@clinic.example"}, config)
    assert viewer.therapist_level is False and viewer.can_import is False
    assert access.resolve_role({"email": "stranger@else.where"}, config) is None
    config["default"] = {"role": "viewer"}
    assert access.resolve_role({"email": "stranger@else.where"}, config).name == "viewer"
    assert access.resolve_role({}, {"rule": [{"email": "", "role": "director"}]}) is None


def test_unknown_role_in_file_is_rejected(tmp_path: Path):
    path = tmp_path / "roles.toml"
    path.write_text('[[rule]]\nemail = "a@b"\nrole = "admin"\n')
    with pytest.raises(access.RolesError, match=r"rule 1 \(email \"a@b\"\) has an unknown role"):
        access.load_rules(path)


@pytest.fixture
def signed_in_app(app_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    roles = tmp_path / "roles.toml"
    roles.write_text(ROLES)
    monkeypatch.setenv("ALLIANCE_ROLES", str(roles))

    def make(user: dict | None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
        at.secrets["auth"] = AUTH
        at.user = user if user is not None else {"is_logged_in": False}
        return at

    return make


def test_not_signed_in_sees_only_the_sign_in_page(signed_in_app):
    at = signed_in_app(None).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric and not at.get("plotly_chart")


def test_signed_in_user_without_role_is_refused(signed_in_app):
    at = signed_in_app({"is_logged_in": True, "email": "stranger@else.where"}).run()
    assert at.error and "no role" in at.error[0].value
    assert not at.metric


def test_viewer_cannot_get_therapist_data_even_by_url(signed_in_app):
    at = signed_in_app({"is_logged_in": True, "email": "viewer@clinic.example"})
    at.query_params["therapist"] = "T-366E"
    at.run()
    assert not at.exception
    assert "f_therapist" not in [s.key for s in at.selectbox]
    assert at.metric  # clinic-level views still work
    assert "therapist" not in at.query_params
    assert any("therapist" in w.value for w in at.sidebar.warning)


def test_supervisor_sees_only_their_sites(signed_in_app):
    at = signed_in_app(
        {"is_logged_in": True, "email": "s@clinic.example", "groups": ["north-supervisors"]}
    ).run()
    assert not at.exception
    assert at.selectbox(key="f_site").options == ["All", "Northside"]
    sup_sessions = next(m.value for m in at.metric if m.label == "Sessions")
    director = signed_in_app({"is_logged_in": True, "email": "director@clinic.example"}).run()
    dir_sessions = next(m.value for m in director.metric if m.label == "Sessions")
    assert int(sup_sessions.replace(",", "")) < int(dir_sessions.replace(",", ""))


def test_local_mode_says_so_on_every_page(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    assert any("Local single-user mode" in c.value for c in at.caption)


def test_audit_log_round_trip(tmp_path: Path):
    db_path = tmp_path / "alliance.duckdb"
    audit.record(
        db_path,
        user="d@c",
        role="director",
        sites=None,
        event="download_png",
        detail={"chart": "dropout_trend", "filters": {"site": "North"}},
    )
    log = audit.read(db_path)
    assert list(log["event"]) == ["download_png"]
    assert '"site": "North"' in log["detail"][0]
    assert log["sites"][0] == "all sites"
