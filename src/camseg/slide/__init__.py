"""camseg.slide (being written)."""

__all__: list[str] = []
