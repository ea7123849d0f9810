"""Capabilities: the engines that run a backend behind the operations of `pocketserve.ops`,
independent of any library."""
