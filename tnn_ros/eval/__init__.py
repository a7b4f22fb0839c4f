"""Evaluation tooling (beside the runtime, never imported by it): metrics and scoring of recorded runs."""
