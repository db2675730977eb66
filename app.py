"""EvoRoute Studio: `streamlit run app.py`. Navigation over pages/, nothing else."""

import streamlit as st

from evoroute.settings import offline_env

offline_env()  # bundled model and price map only, before any page imports them

from ui import state  # noqa: E402  (after offline_env)
from ui.prefetch import prefetch_charts  # noqa: E402

st.set_page_config(page_title="EvoRoute Studio", page_icon=":material/alt_route:", layout="wide")
page = st.navigation([
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/models.py", title="Models", icon=":material/neurology:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/play_circle:"),
    st.Page("pages/pareto.py", title="Pareto explorer", icon=":material/scatter_plot:"),
    st.Page("pages/experience.py", title="Experience", icon=":material/database:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
])
with state.page_run():   # the studio's background loads pause while a page runs
    page.run()
prefetch_charts()        # then the browser loads plotly.js ahead of the first chart
