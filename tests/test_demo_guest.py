"""The built-in demo guest under hybrid86: `hybrid86 run` with no image, the
README's main command (issue 4's "Done when": both worlds at work)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from monitor.guests.demo import DEMO_MARKER, step_lines

pytestmark = pytest.mark.skipif(shutil.which("nasm") is None,
                                reason="the demo guest is assembled with nasm (apt-get install nasm)")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    stats_file = tmp_path_factory.mktemp("demo") / "stats.json"
    res = subprocess.run([sys.executable, "-m", "monitor", "run", "--stats", f"json:{stats_file}"],
                         capture_output=True, timeout=600)
    with open(stats_file) as f:
        stats = json.load(f)
    return res, stats


def test_demo_runs_every_step_to_the_marker(demo_run):
    res, _ = demo_run
    out = res.stdout.decode("latin-1")
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert lines == step_lines()                       # every step "ok", in order, no FAIL
    assert out.rstrip().endswith(DEMO_MARKER.decode())
    assert "booting the built-in demo guest" in res.stderr.decode()


def test_demo_statistics_show_both_worlds(demo_run):
    _, st = demo_run
    assert st["de_instructions"] > 10_000                 # ring-3 tasks and the V86 task ran directly
    assert st["bt_instructions_real_mode"] > 1_000        # BIOS, boot sector, real-mode kernel entry
    assert st["bt_instructions_protected"] > 10_000       # the ring-0 kernel, translated
    assert st["world_switches"] > 50
    assert st["page_faults_reflected"] >= 10              # demand paging, the CR0.WP test
    assert st["sysenter"] > 0 and st["de_software_interrupts"] > 0
    assert st["callouts"]["iret"] > 0 and st["callouts"]["seg_load"] > 0
    assert st["data_window"] != "0xfff00000"              # step 9 mapped the whole top 4 MiB
    assert st["tc_flushes"] >= 1


def test_no_image_and_no_nasm_is_a_clear_error(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "monitor", "run"], capture_output=True, env=env, timeout=60)
    assert res.returncode == 2
    assert b"demo guest could not be built" in res.stderr and b"nasm" in res.stderr
