"""Observability: counters, structured logging, control socket, ss/nstat views."""
