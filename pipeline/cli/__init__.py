"""The `wordpipe` command line: one module per command group, each parser beside its handlers.

    main.py       main(): the parser, logging, signals, and the exit code from pipeline/errors.py
    options.py    flags that several commands share, and the settings they make
    counting.py   run, reference: count files once
    deployment.py up, ingest-server, aggregator, worker, topics, health: a deployment's processes
    autoscale.py  autoscale run | status | simulate
    remote.py     ingest, top, count, status: a running stack's APIs, through pipeline/client.py

Assembling a service is that service's own business (pipeline/stack.py, pipeline/ingest/api.py,
pipeline/autoscaler/main.py, ...): a command only turns flags into settings and calls it.
"""

from pipeline.cli.main import main

__all__ = ["main"]
