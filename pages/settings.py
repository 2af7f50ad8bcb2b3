"""Settings: the cutoffs and methods behind every number (metrics.md calls them settings)."""

import streamlit as st

from alliance import faults, ui
from alliance.settings import Settings, SettingsError
from alliance.views.common import markdown_safe

ui.frame_guard()

st.title("Settings", anchor=False)
st.caption(
    "Which definitions the dashboard uses. Every chart that depends on a setting prints the value "
    "in force, and exports carry it too. Defaults follow OpenFIT and the NHS Talking Therapies "
    "manual; change them only to match your clinic's written policy."
)
current = ui.settings()
defaults = Settings()
can_edit = ui.can("edit_settings")
if ui.settings_problem() and can_edit:  # the banner above says what; here, how to mend it
    st.info(
        "The form shows the settings in force: the file's values that could be used, and the "
        "default for each one that could not. Check them and save: that replaces the file.",
        icon=":material/build:",
    )
if not can_edit:
    st.info(
        "Only directors can change settings. You can see the values in force.",
        icon=":material/lock:",
    )

with st.form("settings"):
    st.subheader("Alliance", anchor=False)
    c1, c2, c3 = st.columns(3)
    srs_cutoff = c1.number_input(
        "SRS cutoff (a total below it counts as low)",
        0.0,
        40.0,
        current.srs_cutoff,
        0.5,
        help="OpenFIT uses < 36; some guides use ≤ 36 (enter 36.5 for that).",
    )
    rupture = c2.number_input(
        "Rupture: SRS drop of at least (points)",
        0.5,
        20.0,
        current.rupture_threshold,
        0.5,
        help="From the same episode's previous SRS. OpenFIT alerts on any 1-point drop; for "
        "leadership views a smaller threshold mostly counts measurement noise.",
    )
    window = c3.number_input(
        "Repair window (SRS administrations)",
        1,
        6,
        current.repair_window,
        1,
        help="A rupture is repaired if an SRS within this many later administrations is at or "
        "above the last SRS before the rupture.",
    )
    st.subheader("Outcomes", anchor=False)
    cols = st.columns(3)
    ors_c = cols[0].number_input(
        "ORS clinical cutoff (below = clinical)", 0.0, 40.0, current.ors_clinical, 0.5
    )
    ors_rc = cols[0].number_input(
        "ORS reliable change (points)", 0.5, 40.0, current.ors_reliable_change, 0.5
    )
    phq_c = cols[1].number_input(
        "PHQ-9 caseness (at or above)", 0.0, 27.0, current.phq9_clinical, 1.0
    )
    phq_rc = cols[1].number_input(
        "PHQ-9 reliable change (points)", 1.0, 27.0, current.phq9_reliable_change, 1.0
    )
    gad_c = cols[2].number_input(
        "GAD-7 caseness (at or above)", 0.0, 21.0, current.gad7_clinical, 1.0
    )
    gad_rc = cols[2].number_input(
        "GAD-7 reliable change (points)", 1.0, 21.0, current.gad7_reliable_change, 1.0
    )
    st.subheader("Therapist comparisons and control charts", anchor=False)
    c1, c2 = st.columns(2)
    methods = ["none", "multiplicative", "additive"]
    overdispersion = c1.selectbox(
        "Funnel-plot overdispersion",
        methods,
        index=methods.index(current.overdispersion),
        help="Where therapists vary more than chance allows (tested with Winsorised z-scores), "
        "widen the limits: additively with the DerSimonian–Laird τ² (default) or "
        "multiplicatively by φ. 'none' never widens.",
    )
    baseline = c2.number_input(
        "Control-chart baseline (first N months of the range)",
        3,
        36,
        current.spc_baseline_months,
        1,
        help="Centre line and 3-sigma limits come from these months.",
    )
    st.subheader("Privacy and reports", anchor=False)
    c1, c2 = st.columns(2)
    k = c1.number_input(
        "Smallest group shown (clients)",
        5,
        100,
        current.privacy_k,
        1,
        help="No aggregate describing fewer clients is shown or exported. CMS uses 11; NHS "
        "Digital 5–8. Lower values disclose more.",
    )
    clinic = c2.text_input("Clinic name (report footers)", current.clinic_name, max_chars=80)
    noise_max = c1.number_input(
        "Largest adjustment to a count",
        1,
        5,
        current.noise_max,
        1,
        help="Each shown count carries a small fixed adjustment so that subtracting two outputs "
        "never gives a small group's exact figure (cell-key perturbation; README, Privacy).",
    )
    noise_variance = c2.number_input(
        "Variance of that adjustment",
        0.1,
        15.0,
        float(current.noise_variance),
        0.1,
        help="At most (largest + 1)(2 x largest + 1) / 6: 2.5 for a largest adjustment of 2. "
        "The default 2 makes -2, -1, 0, +1 and +2 equally likely.",
    )
    saved = st.form_submit_button("Save settings", type="primary", disabled=not can_edit)

if saved and can_edit:
    new = current.replace(
        srs_cutoff=float(srs_cutoff),
        rupture_threshold=float(rupture),
        repair_window=int(window),
        ors_clinical=float(ors_c),
        ors_reliable_change=float(ors_rc),
        phq9_clinical=float(phq_c),
        phq9_reliable_change=float(phq_rc),
        gad7_clinical=float(gad_c),
        gad7_reliable_change=float(gad_rc),
        overdispersion=overdispersion,
        spc_baseline_months=int(baseline),
        privacy_k=int(k),
        clinic_name=clinic.strip() or defaults.clinic_name,
        noise_max=int(noise_max),
        noise_variance=float(noise_variance),
    )
    try:  # refused when saved as when read (alliance/settings.py: RANGES, NoiseParams)
        ui.save_settings(new)
    except SettingsError as exc:
        st.error(f"Not saved: {markdown_safe(str(exc))}.", icon=":material/error:")
        st.stop()
    except OSError as exc:  # a full disk, a read-only folder: a sentence, nothing written
        fault = faults.record(faults.settings_not_saved(exc, ui.settings_path()), exc)
        st.error(markdown_safe(fault.text), icon=":material/error:")
        st.stop()
    ui.audit("settings_changed", {"settings": new.to_json()})
    st.success("Saved. Every page now uses these settings.", icon=":material/check:")

changed = {
    name: (getattr(current, name), getattr(defaults, name))
    for name in Settings.__dataclass_fields__
    if getattr(current, name) != getattr(defaults, name)
}
if changed:  # the clinic name is typed by a person: shown as written, never as markdown
    st.caption(
        "Differs from the defaults: "
        + "; ".join(
            f"{name} = {markdown_safe(str(now))} (default {markdown_safe(str(was))})"
            for name, (now, was) in changed.items()
        )
    )
