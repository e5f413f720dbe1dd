"""Build script for the two compiled parts (everything else is in pyproject.toml):
hpo/engine/_kinkscan.c (is any input exactly on a kink?) and hpo/engine/_bytegather.c (a
training batch gathered from uint8 images through a table of input values).

Both are optional: where no C compiler is available the install still succeeds and the
engine uses PyTorch ops instead (same results, slower on CPU).
"""

from setuptools import Extension, setup


def _engine_extension(name: str) -> Extension:
    """hpo/engine/NAME.c as the optional module hpo.engine.NAME. -fopenmp: large inputs are
    split over PyTorch's own OpenMP threads (the libgomp.so.1 torch loads first is the one
    the extension binds to)."""
    return Extension(
        f"hpo.engine.{name}",
        sources=[f"hpo/engine/{name}.c"],
        extra_compile_args=["-O3", "-fopenmp"],
        extra_link_args=["-fopenmp"],
        optional=True,
    )


setup(ext_modules=[_engine_extension("_kinkscan"), _engine_extension("_bytegather")])
