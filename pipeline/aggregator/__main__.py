import argparse
import logging
import sys

from pipeline import config
from pipeline.aggregator.app import main

parser = argparse.ArgumentParser(prog="python -m pipeline.aggregator", description="wordpipe aggregator (faust app)")
parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default $WORDPIPE_BOOTSTRAP)")
parser.add_argument("--port", type=int, help="HTTP port (default $WORDPIPE_AGGREGATOR_PORT or 8081)")
parser.add_argument("--config", help="TOML settings file")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s aggregator[%(process)d] %(levelname)s %(message)s")
try:
    settings = config.load(args.config, overrides={"bootstrap": args.bootstrap, "aggregator_port": args.port})
    sys.exit(main(settings))
except config.ConfigError as exc:
    sys.exit(f"wordpipe aggregator: {exc}")
