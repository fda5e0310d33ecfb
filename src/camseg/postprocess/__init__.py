"""camseg.postprocess (being written)."""

__all__: list[str] = []
