"""Evaluation tooling (metrics beside the runtime; never imported by nodes)."""
