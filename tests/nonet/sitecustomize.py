"""Loaded by every Python subprocess the tests start (tests/conftest.py puts this folder on
PYTHONPATH): forbids network connections except loopback, as the in-process fixture does."""
import os

if os.environ.get("GUIDED_TEST_NO_NETWORK") == "1":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from nonet_guard import install

    install()
