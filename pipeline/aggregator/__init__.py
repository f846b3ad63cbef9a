"""The aggregator: sums partials into totals exactly once (faust app + pure state)."""
