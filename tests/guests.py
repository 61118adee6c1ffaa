"""Where the shared guest images are (tests skip with a message without them)."""

from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUESTS = os.environ.get("HYBRID86_GUESTS", os.path.join(os.path.dirname(REPO), "shared", "guests"))


def guest_image(relative: str) -> str:
    path = os.path.join(GUESTS, relative)
    if not os.path.isfile(path):
        pytest.skip(f"guest image {relative} not found under {GUESTS} "
                    f"(set HYBRID86_GUESTS to the folder holding freedos/ and linux/)")
    return path
