"""ustcp.packetdrill."""
