"""Where the golden reference data live: tests/data/golden/imagebind_small (committed; see its
README.md for where the numbers come from). Nothing here depends on anything outside the
repository, and a missing file fails the test that needs it: a fresh clone has them all."""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / "imagebind_small"


def golden(name: str) -> Path:
    """The golden file ``name`` (relative to GOLDEN); fails loudly when it is absent."""
    path = GOLDEN / name
    if not path.is_file():
        pytest.fail(f"golden reference file {path} is missing; it is part of the repository "
                    "(git checkout -- tests/data/golden)", pytrace=False)
    return path
