"""Models: register, edit, disable and delete candidate models; prices from litellm's catalogue."""

import streamlit as st

from evoroute import registry
from evoroute.core.errors import EvoRouteError
from evoroute.settings import DEFAULTS
from evoroute.studio import models as studio_models
from ui import state
from ui.widgets import MISSING, field_error, run_action

ADD_ERRORS, EDIT_ERRORS = "md_add_errors", "md_edit_errors"
# each section's confirmation is shown beside the button that asked for it
ADD_FLASH, EDIT_FLASH, LOCAL_FLASH = "md_flash_add", "md_flash_edit", "md_flash_local"
LOCAL_ERROR = "md_local_error"
st.session_state.setdefault(ADD_ERRORS, {})
st.session_state.setdefault(EDIT_ERRORS, {})


def _flash(key: str) -> None:
    for msg in st.session_state.pop(key, []):
        st.success(msg, icon=":material/check_circle:")


st.title("Models")
st.caption("Registered prices are what every cost figure uses from then on (replayed runs "
           "recompute cost from the recorded token counts). API keys are never stored: they "
           "come from the environment only.")

with state.session() as s:
    table = studio_models.models_frame(session=s)
if table.empty:
    st.info("No models registered yet.")
else:
    st.dataframe(table, hide_index=True, key="md_table", placeholder=MISSING,
                 column_config={"input $/1M": st.column_config.NumberColumn(format="$%.4f"),
                                "output $/1M": st.column_config.NumberColumn(format="$%.4f")})


def _prefill(prefix: str) -> None:
    """Copy litellm's catalogue prices of the chosen id into the price fields."""
    lid = st.session_state.get(f"{prefix}_litellm")
    prices = registry.litellm_prices(lid) if lid else None
    if prices is not None:
        st.session_state[f"{prefix}_in"], st.session_state[f"{prefix}_out"] = prices
    st.session_state[f"{prefix}_catalogue_price"] = prices


def _add() -> None:
    ss = st.session_state

    def go():
        entry = registry.add_model(
            session=s, name=ss.get("md_name", ""), litellm_id=ss.get("md_litellm") or "",
            input_price_per_m=ss.get("md_in"), output_price_per_m=ss.get("md_out"),
            ttft_s=ss.get("md_ttft"), tokens_per_s=ss.get("md_tps"),
            api_base=ss.get("md_api_base") or None, notes=ss.get("md_notes", ""))
        ss[ADD_FLASH] = [f"registered {entry.name} (${entry.input_price_per_m:g} / "
                         f"${entry.output_price_per_m:g} per 1M tokens, {entry.price_source})"]
        # assigned, not dropped: the browser shows a value only when the script sets it
        ss.update(md_name="", md_litellm=None, md_litellm_text="", md_api_base="", md_in=None,
                  md_out=None, md_ttft=DEFAULTS.ttft_s, md_tps=DEFAULTS.tokens_per_s,
                  md_notes="", md_catalogue_price=None)
        return entry

    with state.session() as s:
        run_action(go, field_errors_key=ADD_ERRORS)


def _typed_id() -> None:
    st.session_state["md_litellm"] = st.session_state.get("md_litellm_text") or None
    _prefill("md")


ids, cat_error = state.litellm_catalogue()

st.subheader("Register a model")
errs = st.session_state[ADD_ERRORS]
register_box = st.container(border=True)
c1, c2 = register_box.columns(2)
with c1:
    st.text_input("name", key="md_name", placeholder="e.g. gpt-4o-mini")
    field_error(errs, "name")
    if ids is None:
        st.text_input("litellm id (litellm's catalogue is still loading)", key="md_litellm_text",
                      on_change=_typed_id)
    else:
        st.selectbox("litellm id (type to search litellm's catalogue, or enter your own)",
                     ids, index=None, key="md_litellm", accept_new_options=True,
                     filter_mode="contains", placeholder=f"{len(ids):,} chat models",
                     on_change=_prefill, args=("md",))
    if cat_error:
        st.caption(cat_error)
    if ids is None:
        @st.fragment(run_every=1.0)
        def _wait_for_catalogue() -> None:
            loaded, _ = state.litellm_catalogue()
            if loaded is not None:
                st.rerun()
        _wait_for_catalogue()
    cat = st.session_state.get("md_catalogue_price")
    if cat is not None:
        cat_in, cat_out = cat
        st.caption(f"litellm catalogue price: ${cat_in:g} in / ${cat_out:g} out per 1M tokens "
                   "(pre-filled; change them to override)")
    field_error(errs, "litellm_id")
    st.text_input("api base (optional, e.g. http://127.0.0.1:8080/v1)", key="md_api_base")
    field_error(errs, "api_base")
with c2:
    a, b = st.columns(2)
    a.number_input("input price (USD per 1M tokens)", value=None, step=0.01, format="%.4f",
                   key="md_in", placeholder="from litellm")
    with a:
        field_error(errs, "input_price_per_m")
    b.number_input("output price (USD per 1M tokens)", value=None, step=0.01, format="%.4f",
                   key="md_out", placeholder="from litellm")
    with b:
        field_error(errs, "output_price_per_m")
    # defaults through the session (not value=): the form's reset assigns them again
    st.session_state.setdefault("md_ttft", DEFAULTS.ttft_s)
    st.session_state.setdefault("md_tps", DEFAULTS.tokens_per_s)
    a.number_input("time to first token (s)", step=0.05, key="md_ttft")
    with a:
        field_error(errs, "ttft_s")
    b.number_input("output tokens per second", step=5.0, key="md_tps")
    with b:
        field_error(errs, "tokens_per_s")
    st.text_input("notes", key="md_notes")
    field_error(errs, "notes")
with register_box:
    st.button("Register model", type="primary", key="md_add", on_click=_add,
              icon=":material/add:")
    _flash(ADD_FLASH)


# ----------------------------------------------------------------------------- edit
st.subheader("Edit, disable or delete")
if table.empty:
    st.caption("Nothing to edit yet.")
    _flash(EDIT_FLASH)
else:
    names = table["name"].tolist()

    def _load_edit() -> None:
        ss = st.session_state
        row = table[table["name"] == ss["me_name"]].iloc[0]
        ss["me_litellm"] = row["litellm id"]
        ss["me_in"], ss["me_out"] = float(row["input $/1M"]), float(row["output $/1M"])
        ss["me_ttft"], ss["me_tps"] = float(row["ttft (s)"]), float(row["tokens/s"])
        ss["me_api_base"], ss["me_notes"] = row["api base"], row["notes"]
        ss["me_enabled"] = bool(row["enabled"])
        ss[EDIT_ERRORS] = {}

    if st.session_state.get("me_name") not in names:
        st.session_state["me_name"] = names[0]
        _load_edit()
    st.selectbox("model", names, key="me_name", on_change=_load_edit)

    def _save() -> None:
        ss = st.session_state

        def go():
            entry = registry.update_model(
                ss["me_name"], session=s, litellm_id=ss.get("me_litellm") or "",
                input_price_per_m=ss.get("me_in"), output_price_per_m=ss.get("me_out"),
                ttft_s=ss.get("me_ttft"), tokens_per_s=ss.get("me_tps"),
                api_base=ss.get("me_api_base") or None, notes=ss.get("me_notes", ""),
                enabled=bool(ss.get("me_enabled")))
            ss[EDIT_FLASH] = [f"saved {entry.name} (prices: {entry.price_source})"]
            return entry

        with state.session() as s:
            run_action(go, field_errors_key=EDIT_ERRORS)

    def _delete() -> None:
        ss = st.session_state
        if not ss.get("me_confirm"):
            ss[EDIT_ERRORS] = {"delete": "tick “yes, delete” first"}
            return
        with state.session() as s:
            if run_action(lambda: registry.remove_model(ss["me_name"], session=s),
                          field_errors_key=EDIT_ERRORS) is None and not ss[EDIT_ERRORS]:
                ss[EDIT_FLASH] = [f"deleted {ss['me_name']} (its past records stay in the base)"]
        ss.pop("me_name", None)
        ss["me_confirm"] = False

    errs = st.session_state[EDIT_ERRORS]
    e1, e2 = st.columns(2)
    with e1:
        st.text_input("litellm id", key="me_litellm", on_change=_prefill, args=("me",),
                      help="a litellm id with a catalogue price fills in its prices")
        field_error(errs, "litellm_id")
        st.text_input("api base", key="me_api_base")
        field_error(errs, "api_base")
        st.text_input("notes", key="me_notes")
        field_error(errs, "notes")
        st.toggle("enabled (routable)", key="me_enabled")
    with e2:
        a, b = st.columns(2)
        a.number_input("input price (USD per 1M tokens)", step=0.01, format="%.4f", key="me_in")
        with a:
            field_error(errs, "input_price_per_m")
        b.number_input("output price (USD per 1M tokens)", step=0.01, format="%.4f", key="me_out")
        with b:
            field_error(errs, "output_price_per_m")
        a.number_input("time to first token (s)", step=0.05, key="me_ttft")
        with a:
            field_error(errs, "ttft_s")
        b.number_input("output tokens per second", step=5.0, key="me_tps")
        with b:
            field_error(errs, "tokens_per_s")
    b1, b2, b3 = st.columns([1, 1, 2])
    b1.button("Save changes", key="me_save", on_click=_save, icon=":material/save:")
    b2.button("Delete", key="me_delete", on_click=_delete, icon=":material/delete:")
    b3.checkbox("yes, delete", key="me_confirm")
    field_error(errs, "delete")
    field_error(errs, "name")
    _flash(EDIT_FLASH)


# ----------------------------------------------------------------------------- local models
st.subheader("Local models (offline, llama.cpp)")
ok, why = studio_models.local_models_available()
if not ok:
    st.info(why)
else:
    st.caption(why + ". Registered with notional price 0. A live run needs their servers: start "
               "them here (each server binds 127.0.0.1 only and needs no API key).")

    def _register_local() -> None:
        with state.session() as s:
            added = run_action(lambda: studio_models.register_local_models(session=s))
        if added is not None:
            st.session_state[LOCAL_FLASH] = [
                f"registered local models: {', '.join(added)}" if added
                else "no new local model to register (already registered, or their packages "
                     "are not installed)"]

    def _server_action(fn) -> None:
        # beside the buttons, not at the top of the page where a callback's message lands
        try:
            fn()
        except EvoRouteError as exc:
            st.session_state[LOCAL_ERROR] = str(exc)

    def _start_servers() -> None:
        _server_action(lambda: studio_models.start_local_servers(
            st.session_state.get("md_local_pick") or [], engine_url=state.db_url()))

    def _stop_servers() -> None:
        _server_action(lambda: studio_models.stop_local_servers(
            st.session_state.get("md_local_pick") or None))

    @st.fragment(run_every=1.0)
    def _server_job_progress() -> None:
        job = studio_models.server_job()
        if job is None or job.done:
            st.rerun()
        verb = "starting" if job.action == "start" else "stopping"
        st.info(f"{verb} {', '.join(job.names) or 'every server'} in the background … "
                f"{job.elapsed_s:.0f} s", icon=":material/hourglass_top:")

    installed = studio_models.installed_local_models()
    job = studio_models.server_job()
    busy = job is not None and not job.done
    st.dataframe(studio_models.local_model_catalogue(), hide_index=True, key="md_local_table",
                 placeholder=MISSING,
                 column_config={"up in (s)": st.column_config.NumberColumn(format="%.1f")})
    st.multiselect("local models", installed, default=installed, key="md_local_pick",
                   disabled=busy, help="the installed models Start / Stop act on (Stop with "
                                       "none picked: every server)")
    b1, b2, b3 = st.columns(3)
    b1.button("Start servers", key="md_local_start", on_click=_start_servers, disabled=busy,
              type="primary", icon=":material/play_arrow:",
              help="start their servers and register them with the addresses they got; runs "
                   "in the background, the page stays usable")
    b2.button("Stop servers", key="md_local_stop", on_click=_stop_servers, disabled=busy,
              icon=":material/stop:")
    b3.button("Register local models", key="md_local", on_click=_register_local,
              icon=":material/memory:", help="as candidate models, without starting them")
    if msg := st.session_state.pop(LOCAL_ERROR, None):
        st.error(msg, icon=":material/error:")
    if busy:
        _server_job_progress()
    elif job is not None and job.error:
        st.error(f"local servers could not be {job.action}ed: {job.error}", icon=":material/error:")
    elif job is not None:
        done = ", ".join(job.result) or "no server was running"
        st.success(f"servers started and registered: {done}" if job.action == "start"
                   else f"servers stopped: {done}", icon=":material/check_circle:")
    _flash(LOCAL_FLASH)
