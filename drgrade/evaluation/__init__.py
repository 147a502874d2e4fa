"""Split-level metrics, thresholds, evaluation files and the report."""
