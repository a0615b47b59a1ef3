"""The benchmarks (``bench/``) are not an installed package: import them from the checkout."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
