"""Report pack: the charts for a quality-improvement meeting as a deck, a PDF or a ZIP."""

import functools

import streamlit as st

from alliance import audit, exports, report, ui
from alliance.views.common import markdown_safe

ui.frame_guard()
ctx = ui.context()
st.title("Report pack", anchor=False)
st.caption(
    "The charts of the dashboard, ready for a quality-improvement meeting: labelled with their "
    "definitions and n, withheld exactly as on screen, for the filters in the sidebar."
)
if not ui.can("export"):
    st.error("Your role cannot export. Ask a clinical director.", icon=":material/lock:")
    st.stop()
exports.ensure_server()  # start the chart export browser now, so building is quick

with st.expander("What goes in a pack", icon=":material/info:"):
    st.markdown(
        """
- **PowerPoint deck**: a title slide (clinic, period, filters, the date the data runs
  through), then one chart per slide under a one-sentence headline, with the definition,
  how to read it and the settings in force in the speaker notes; a closing slide with the
  definitions and the privacy rule.
- **PDF report**: a cover with contents, one captioned chart per page, and an appendix with
  the metric definitions, the settings in force, the data version and when it was generated.
- **ZIP**: every chart as PNG (slides) and SVG (print), the data behind each as CSV, and a
  README saying what is where.

Every chart carries its title, the filters, its definition and n, the clinic's name and the
date the data runs through. Any group describing fewer clients than the privacy threshold
reads "n < k" in every format, as on screen. The default is the **monthly QI pack**: the
alliance and dropout trends, dropout by early alliance, outcomes, the therapist funnel plots
and equity; add or remove sections and charts below.

The same pack can be built on a schedule:
`python -m alliance report --out pack.pptx --from 2026-01 --to 2026-12 --site Riverside`.
"""
    )

st.text(f"Pack for: {ctx.filters.describe()}")  # plain text: site names come from the data

sections = report.available_sections()
titles = {s.key: s.title for s in sections}
modules = {s.key: s.module for s in sections}
left, right = st.columns([3, 2])
chosen_sections = left.multiselect(
    "Sections",
    options=list(titles),
    default=report.default_sections(),
    format_func=titles.get,
    key="rp_sections",
)
meeting = right.toggle(
    "Meeting mode",
    value=bool(ctx.meeting_mode),
    key="rp_meeting",
    help="Therapists shown as A, B, C… (labels carry no identity), for presenting to a room.",
)
fmt = right.radio(
    "Format",
    list(report.FORMATS),
    format_func=report.FORMAT_LABELS.get,
    horizontal=True,
    key="rp_format",
)
pack_ctx = report.with_meeting_mode(ctx, meeting)
views = {key: ui.view(key, modules[key].build, pack_ctx) for key in chosen_sections}
catalog = report.catalog(views)
labels = dict(catalog)
charts = left.multiselect(
    "Charts",
    options=[cid for cid, _ in catalog],
    default=report.default_charts(views),
    format_func=labels.get,
    # a new set of sections starts from its default charts
    key=f"rp_charts_{'-'.join(chosen_sections)}_{int(meeting)}",
)
for key, v in views.items():
    if v.notice:
        st.text(f"{titles[key]} is left out: {v.notice}")

filters_param = pack_ctx.filters.to_query_params()
signature = (pack_ctx.filters, pack_ctx.settings, meeting, fmt, tuple(charts))
if st.button(
    f"Build the {report.FORMAT_LABELS[fmt]} ({len(charts)} charts)",
    type="primary",
    icon=":material/build:",
    disabled=not charts,
):
    bar = st.progress(0.0, text="Starting")
    try:
        data, pack = report.build(
            pack_ctx,
            fmt,
            charts,
            sections=chosen_sections,
            views=views,
            progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m),
        )
    except exports.ExportError as exc:
        st.error(markdown_safe(str(exc)), icon=":material/error:")
    else:
        # recorded before it is offered; a pack the audit log cannot record is not kept
        # (ui.audit has said why on the page)
        st.session_state.pop("rp_result", None)
        if ui.audit(
            f"report_{fmt}",
            {"charts": charts, "meeting_mode": meeting, "filters": filters_param},
        ):
            st.session_state["rp_result"] = (signature, data, pack.file_name(fmt), len(pack.charts))


def _offer(payload: bytes) -> bytes:
    return payload


result = st.session_state.get("rp_result")
if result and result[0] == signature:
    _, data, name, n_charts = result
    # the bytes reach the browser only through this callable, after its audit entry is written
    outcome = st.session_state.setdefault("rp_outcome", audit.Outcome())
    entry = functools.partial(
        audit.record,
        ui.db_path(),
        **ui.audit_identity(),
        event=f"download_report_{fmt}",
        detail={"file": name, "filters": filters_param},
    )
    st.download_button(
        f"Download {name} ({len(data) / 1e6:.1f} MB, {n_charts} charts)",
        data=audit.guarded(functools.partial(_offer, data), entry, outcome),
        file_name=name,
        mime=exports.MIME[fmt],
        type="primary",
        icon=":material/download:",
        on_click=ui.download_clicked,
        args=(outcome, "rp_refused"),
    )
    refused = st.session_state.pop("rp_refused", None)
    if refused:
        st.error(refused, icon=":material/lock:")
elif result:
    st.caption("The filters or the choice changed since the last build: build again.")
