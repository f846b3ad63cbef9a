"""`wordpipe up --state-dir DIR`: the embedded broker's contents kept in a directory.

Tansu keeps everything in memory, so a stack's totals, receipts and idempotency keys
would die with it. The journal (journal.py) tails every topic into DIR as the broker takes
them and makes them durable in cuts that a crash at any instant can come back to;
ingest answers 202 only once its upload is inside one (pipeline/ingest/durability.py). At
start, the directory (directory.py: one stack at a time, every file checksummed, damage
refused) is verified and its last cut written back into the fresh broker, at the same
offsets, before any service starts.
"""
