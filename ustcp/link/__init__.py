"""ustcp.link."""
