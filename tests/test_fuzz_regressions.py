"""Replay saved fuzz reproducers (tests/fuzz_regressions/*.json).

`hybrid86 fuzz --save-regressions tests/fuzz_regressions` writes one file per
shrunk mismatch.  A file with "xfail": "<reason>" documents an open bug (the
test must still fail: strict); without it the case must pass."""

import glob
import json
import os

import pytest

from monitor.fuzz.campaign import assert_equivalent
from monitor.fuzz.case import Case

FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fuzz_regressions", "*.json")))


def _params():
    for path in FILES:
        with open(path) as f:
            data = json.load(f)
        marks = [pytest.mark.xfail(strict=True, reason=data["xfail"])] if data.get("xfail") else []
        yield pytest.param(path, marks=marks, id=os.path.basename(path))


@pytest.mark.parametrize("path", list(_params()))
def test_regression_case(path):
    with open(path) as f:
        data = json.load(f)
    assert_equivalent(Case.from_dict(data["case"]))
