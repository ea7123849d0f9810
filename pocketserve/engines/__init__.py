"""Capabilities: plain-dataclass requests and results, independent of any library."""
