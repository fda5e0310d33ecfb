"""Synthetic PCam-like patches (being written)."""

__all__: list[str] = []
