"""Build script for the one compiled part: hpo/engine/_kinkscan.c (everything else is in
pyproject.toml).

The extension is optional: where no C compiler is available the install still succeeds
and the activations find kinks with PyTorch ops instead (same results, slower on CPU).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hpo.engine._kinkscan",
            sources=["hpo/engine/_kinkscan.c"],
            # -fopenmp: large inputs are scanned by PyTorch's own OpenMP threads (the
            # libgomp.so.1 torch loads first is the one the extension binds to).
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        )
    ]
)
