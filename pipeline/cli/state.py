"""`wordpipe state`: a stack's state directory (pipeline/statedir/), looked at from outside.

wordpipe state check DIR           verify what a restore needs; exit 1 naming what is damaged
wordpipe state salvage DIR NEW     copy into NEW the newest cut of DIR that verifies whole
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    state = sub.add_parser("state", help="verify or salvage a state directory (wordpipe up --state-dir)")
    commands = state.add_subparsers(dest="state_command", required=True)
    check = commands.add_parser("check", help="verify everything a restore of DIR needs, without changing it")
    check.add_argument("directory", metavar="DIR")
    check.set_defaults(func=cmd_check)
    salvage = commands.add_parser(
        "salvage",
        help="copy into NEW (a new directory) the newest cut of DIR whose records all verify; "
        "wordpipe up --state-dir NEW then restores it",
    )
    salvage.add_argument("directory", metavar="DIR")
    salvage.add_argument("new", metavar="NEW")
    salvage.set_defaults(func=cmd_salvage)


def cmd_check(args: argparse.Namespace) -> int:
    from pipeline.statedir.directory import Directory

    contents = Directory(Path(args.directory)).verify()
    if contents.cut is None:
        print(f"{args.directory}: holds nothing yet")
        return 0
    cut = contents.cut
    print(
        f"{args.directory} verifies: cut {cut.n} of {_when(cut.at)} ({'a clean stop' if cut.clean else 'not a clean stop'}), "
        f"{sum(contents.records.values()):,} records of {len(cut.topics)} topics, {sum(cut.sizes.values()):,} bytes"
    )
    return 0


def cmd_salvage(args: argparse.Namespace) -> int:
    from pipeline.statedir.directory import Directory

    cut, skipped = Directory(Path(args.directory)).salvage(Directory(Path(args.new)))
    print(
        f"{args.new}: cut {cut.n} of {_when(cut.at)}, the newest of {args.directory} that verifies whole"
        + (f" ({skipped} newer ones do not: what they added is lost)" if skipped else "")
    )
    return 0


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).isoformat(sep=" ", timespec="seconds")
