"""Thin routes: parse, call the registry, shape the answer."""
