"""Step records as CSV: cells (spreadsheet-safe, redacted), rows (the validated import row),
export and import. The SQL they need lives in :mod:`evoroute.storage.steps_io`."""
