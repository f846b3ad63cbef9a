"""The moment a peer process (bench/peer_bytewax.py, bench/peer_quix.py) gets its first
record, and its CPU then, for bench/peers.py: where its consuming starts, after start-up.

Output records alone cannot tell: both peers count whole batches of records before they
send any result on, so the first output comes long after the counting began.
"""

import json
import os
import time

_marked = False


def first_record() -> None:
    """Write <PEER_MARKS>/<pid>.json once, at the first call: wall-clock time and this process's CPU."""
    global _marked
    if not _marked:
        _marked = True
        mark = {"at": time.time(), "cpu": time.process_time()}
        with open(os.path.join(os.environ["PEER_MARKS"], f"{os.getpid()}.json"), "w") as f:
            json.dump(mark, f)
