"""The pytest-benchmark suites (a package: their conftest.py and tests/'s do not collide)."""
