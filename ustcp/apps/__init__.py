"""ustcp.apps."""
