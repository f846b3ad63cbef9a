"""The autoscaling policy against a KEDA-style one, on every built-in scenario.

    python bench/autoscale_compare.py [--plots docs/]

Both run on the same simulated workers (100 records/s each, 5 s start-up, 3 s rebalance
pause, 12 partitions): ours with its default policy, the KEDA-style one with
ceil(lag / lagThreshold) (lagThreshold = 10 s of one worker's work) and the HPA's
defaults. Prints a markdown table; with --plots, writes one PNG per scenario.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.autoscaler.policy import Policy  # noqa: E402
from pipeline.autoscaler.simulate import SCENARIOS, compare, plot, scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plots", type=Path, help="directory for autoscale-<scenario>.png")
    args = ap.parse_args()
    rows = [
        "| scenario | policy | actions | reversals | final / expected workers | drain (s) | max lag | worker-minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SCENARIOS:
        results = compare(Policy(), scenario(name))
        for r in results:
            s = r.summary()
            drain = "-" if s["drain_seconds"] is None else f"{s['drain_seconds']:.0f}"
            rows.append(
                f"| {name} | {r.policy} | {len(s['decisions'])} | {s['reversals']} | "
                f"{s['final_workers']} / {s['expected_workers']} | {drain} | {s['max_lag']:,.0f} | {s['worker_seconds'] / 60:,.0f} |"
            )
        if args.plots:
            args.plots.mkdir(parents=True, exist_ok=True)
            plot(list(results), args.plots / f"autoscale-{name}.png")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
