"""The one error type every codec raises on malformed input."""


class ParseError(ValueError):
    """A frame or header that cannot be parsed. ``reason`` is a short counter-friendly tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
