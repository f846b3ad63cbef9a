"""wordpipe: message-driven word counting on Kafka.

The whole flow, in the order data moves:

    files --ingest--> chunks --workers--> partials --aggregator--> totals

`pipeline.run.Pipeline` wires it together; each stage lives in its own module.
"""

__version__ = "0.1.0"
