"""Ingest: documents in, chunks on Kafka."""
