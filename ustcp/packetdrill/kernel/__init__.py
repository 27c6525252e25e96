"""The kernel target of ``ustcp packetdrill``: scripts against this machine's Linux TCP."""
