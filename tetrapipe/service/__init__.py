"""Around a run: config reload, the status server, metrics, the progress line."""
