"""TCP connection-management conformance suite."""

__version__ = "0.1.0"
