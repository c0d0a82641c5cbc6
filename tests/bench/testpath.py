"""Puts tests/ on sys.path, so a benchmark run as a script imports the shared test helpers (`support`)."""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
