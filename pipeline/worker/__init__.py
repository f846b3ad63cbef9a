"""The worker process: chunks in, partial counts out (`python -m pipeline.worker`)."""
