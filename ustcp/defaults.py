"""The addresses and device a stack gets when nobody says otherwise (daemon and library)."""

DEFAULT_TUN = "ustcp0"
DEFAULT_ADDR = "10.77.0.2"
DEFAULT_PEER = "10.77.0.1/24"
DEFAULT_MTU = 1500
LEVELS = ("debug", "info", "warning", "error", "critical")  # --log-level's choices
