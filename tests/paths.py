"""Where the tests find the repository and the shared vectors, whatever folder a test module sits in."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (as CI lays it out); tests read the vectors there, never copy them.
VECTORS = REPO / ".." / "shared" / "vectors"
