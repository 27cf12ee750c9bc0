"""Builders shared by test modules (import these; never import one test module from another)."""
