"""Build of camseg's one C extension, ``camseg._cpu``; all other metadata is in pyproject.toml.

The extension holds the CPU kernels of the post-processing hot path (see
``src/camseg/_native.py``). It is optional: where it cannot be compiled the
install still succeeds and camseg uses its torch/NumPy code paths instead.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """Add flags by compiler: optimise, and keep float arithmetic exactly as written."""

    def build_extensions(self) -> None:
        """Compile every extension with the flags of its compiler."""
        if self.compiler.compiler_type == "msvc":
            args = ["/O2", "/fp:precise"]
        else:
            # no fused multiply-add: the histogram must round as numpy.histogram does
            args = ["-O3", "-ffp-contract=off", "-fno-strict-aliasing"]
        for ext in self.extensions:
            ext.extra_compile_args = args + list(ext.extra_compile_args or [])
        super().build_extensions()


setup(
    ext_modules=[Extension("camseg._cpu", sources=["src/camseg/_cpu.c"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
