"""The one compiled part of camkit: the threshold-sweep kernel of camkit.localize.sweep.

Everything else is configured in pyproject.toml. The extension is optional: without a C compiler the
install still succeeds and the sweep uses its pure-numpy path (same boxes, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "camkit.localize._components",
            sources=["camkit/localize/_components.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
