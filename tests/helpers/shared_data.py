"""Where the real data beside the repository is: ``../shared/data`` (see its README).

Tests reach it through the ``shared_data`` fixture, which skips when it is absent; only a
parametrisation that lists its files at collection time reads :data:`SHARED_DATA` directly.
"""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
