"""What the studio pages ask of the library: one service module per page or job.

Pages stay thin (read widget state, call one of these, draw the result); everything that
touches the database, routing maths or metrics lives here, so it is testable without a
browser and the CLI could reuse it. No streamlit import in this package. The SQL behind
these modules is in :mod:`evoroute.storage.views`.

Performance targets: every page < 2 s, live fragment < 100 ms at 100,000 records.
"""
