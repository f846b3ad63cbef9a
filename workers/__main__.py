import argparse
import logging
import sys

from pipeline import config
from workers.worker import main

parser = argparse.ArgumentParser(prog="python -m workers", description="wordpipe worker: counts chunks into partials")
parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default $WORDPIPE_BOOTSTRAP)")
parser.add_argument("--config", help="TOML settings file")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s")
try:
    settings = config.load(args.config, overrides={"bootstrap": args.bootstrap})
except config.ConfigError as exc:
    sys.exit(f"wordpipe worker: {exc}")
sys.exit(main(settings))
