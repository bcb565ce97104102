"""The prioritization service."""
