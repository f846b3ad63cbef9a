"""Watching the pipeline from outside, for the aggregator's views and the autoscaler alike:
the workers' lag (lag.py, measured as metrics.py's pure Metrics), their status reports and the writers' leases (roster.py), each
role's crashes (crash_reports.py), and what ingest accepted (accepted.py)."""
