"""The compiled parts of camkit: the threshold-sweep kernel of camkit.localize.sweep and Pillow's RGB
resize (camkit.pil_resize).

Everything else is configured in pyproject.toml. The extensions are optional: without a C compiler the
install still succeeds; the sweep uses its pure-numpy path (same boxes, slower) and the resize calls
Pillow (same pixels, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "camkit.localize._components",
            sources=["camkit/localize/_components.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "camkit._pilresample",
            sources=["camkit/_pilresample.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ]
)
