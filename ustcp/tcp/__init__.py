"""The TCP engine: sans-IO, deterministic, driven by (now, segment) and (now, user call)."""
