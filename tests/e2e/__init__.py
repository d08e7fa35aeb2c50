"""Browser tests of the web console.

A package, so that its conftest does not shadow tests/conftest.py as module ``conftest``.
"""
