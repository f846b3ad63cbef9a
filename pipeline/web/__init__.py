"""HTTP, shared by every service: the server under them (server.py) and what their APIs have
in common, auth, JSON errors, metrics and the OpenAPI rule book (app.py)."""
