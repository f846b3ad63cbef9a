"""Flags that several commands share, and the settings they make."""

from __future__ import annotations

import argparse
import os

from pipeline import config

CONFIG_HELP = "TOML settings file ($WORDPIPE_CONFIG)"
TOKEN_HELP = (
    "bearer token (default: $WORDPIPE_TOKEN, else the first of $WORDPIPE_TOKENS, else the one in $WORDPIPE_TOKEN_FILE, "
    "else the one the default `wordpipe up` saved)"
)
USER_DICT_HELP = "extra Chinese words for the segmenter, in jieba's user dictionary format"


def settings(args: argparse.Namespace, **overrides) -> config.Settings:
    """The settings: defaults < file < $WORDPIPE_* < these flags (None: not given)."""
    return config.load(args.config, overrides={"bootstrap": args.bootstrap, **overrides})


def cluster(sp: argparse.ArgumentParser) -> None:
    """--bootstrap and --config."""
    sp.add_argument(
        "--bootstrap", help="Kafka bootstrap servers; omit to start an embedded broker ($WORDPIPE_BOOTSTRAP)"
    )
    sp.add_argument("--config", help=CONFIG_HELP)


def aggregators(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--aggregators",
        type=positive,
        metavar="N",
        help="aggregator instances, each with its own results port; any of them answers for all (default 1; `run` starts 2 for 32 MiB or more)",
    )


def backend(sp: argparse.ArgumentParser, default_note: str = "default local") -> None:
    """--backend, --image and --mesos-master."""
    sp.add_argument("--backend", choices=config.BACKENDS, help=f"where workers run ({default_note})")
    sp.add_argument("--image", help="the workers' image for --backend docker or mesos (default wordpipe:latest)")
    sp.add_argument("--mesos-master", help="the Mesos master(s) for --backend mesos, comma-separated")


def backend_choice(args: argparse.Namespace) -> dict[str, str | None]:
    """The settings that `backend()`'s flags give."""
    return {"backend": args.backend, "image": args.image, "mesos_master": args.mesos_master}


def source(sp: argparse.ArgumentParser, what: str) -> None:
    """--source TOPIC[:$.field], repeatable, and --source-start."""
    sp.add_argument(
        "--source",
        action="append",
        metavar="TOPIC[:$.FIELD]",
        help=f"a topic other producers fill, its values UTF-8 text or JSON with the text at a field: {what}",
    )
    sp.add_argument(
        "--source-start",
        choices=("earliest", "latest"),
        help="where a source's counting starts when none is committed (default earliest)",
    )


def source_choice(args: argparse.Namespace) -> dict[str, str | None]:
    """The settings that `source()`'s flags give."""
    return {"sources": ",".join(args.source) if args.source else None, "source_start": args.source_start}


def path(value: str | None) -> str | None:
    """A path flag made absolute: services and workers may run elsewhere."""
    return os.path.abspath(value) if value else None


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
