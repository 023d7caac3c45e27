"""The node's HTTP face: its listener (:mod:`host.web.server`) and the dashboard served on it."""
