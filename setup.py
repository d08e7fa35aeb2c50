"""Build of vmesh's one C extension (the switch's data plane); everything else is in pyproject.toml.

optional=True: where no C compiler is present the install still succeeds and the switch runs its
pure-Python path (docs/switch.md, "Data plane")."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vmesh.switch._dataplane",
            ["src/vmesh/switch/_dataplane.c"],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
