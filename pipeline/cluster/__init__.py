"""Cluster backends: where worker processes run (local processes now; Docker and Mesos later)."""
