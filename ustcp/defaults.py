"""The addresses and device a stack gets when nobody says otherwise (daemon and library)."""

DEFAULT_TUN = "ustcp0"
DEFAULT_ADDR = "10.77.0.2"
DEFAULT_PEER = "10.77.0.1/24"
DEFAULT_ADDR6 = "fd77::2"  # a unique local address (RFC 4193): dual-stack by default
DEFAULT_PEER6 = "fd77::1/64"
DEFAULT_MTU = 1500
LEVELS = ("debug", "info", "warning", "error", "critical")  # --log-level's choices
