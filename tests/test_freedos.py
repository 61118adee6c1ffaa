"""FreeDOS from the shared boot floppy, through the binary translator, as a user runs it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import sys

import pytest

from guests import guest_image
from monitor.guests.dos import MARKER, make_marker_image

pytestmark = pytest.mark.guests
FREEDOS = "freedos/freedos-boot-1440k.img"


def hybrid86(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=timeout)


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture(scope="module")
def marker_image(tmp_path_factory):
    if not shutil.which("nasm") or not shutil.which("mcopy"):
        pytest.skip("needs nasm and mtools (apt-get install nasm mtools)")
    dst = tmp_path_factory.mktemp("dos") / "freedos-marker.img"
    make_marker_image(guest_image(FREEDOS), str(dst))
    return str(dst)


def test_boots_to_the_prompt_and_leaves_the_image_alone(tmp_path):
    image = guest_image(FREEDOS)
    before = md5(image)
    dump = tmp_path / "screen.txt"
    res = hybrid86("run", "--fda", image, "--headless", "--expect", "FreeCom version",
                   "--timeout", "60", "--screen-dump", str(dump))
    assert res.returncode == 0, res.stderr
    screen = dump.read_text()
    assert "FreeDOS kernel" in screen and "FreeCom version" in screen
    assert md5(image) == before


def test_marker_variant_ends_with_status_0_through_the_exit_port(marker_image, tmp_path):
    stats_file = tmp_path / "stats.json"
    res = hybrid86("run", "--fda", marker_image, "--headless", "--debugcon", "stdio",
                   "--timeout", "60", "--stats", f"json:{stats_file}")
    assert res.returncode == 0, res.stderr
    assert MARKER.decode() in res.stdout
    stats = json.loads(stats_file.read_text())
    # Guest code ran from the translation cache, and the callout classes show up.
    assert stats["bt_instructions"] > 1_000_000 and stats["units_translated"] > 1000
    assert stats["chain_patches"] > 0 and stats["landing_pads"] > 0
    for kind in ("bios", "chain", "lookup_miss"):
        assert stats["callouts"].get(kind, 0) > 0, kind
    # Segment loads and reads, flags instructions, near and far returns, int n
    # and iret stay in the TC: they never call out.
    for kind in ("seg_read", "ret", "retf", "iret", "int", "callf", "jmpf"):
        assert stats["callouts"].get(kind, 0) == 0, kind
    assert stats["interrupts_delivered"] > 0 and stats["bios_calls"]["13"] > 0
    # The kernel's bounded keyboard polling while booting is not mistaken for idling.
    assert stats["idle_halts"] == 0


def test_typed_commands_appear_on_the_screen(tmp_path):
    dump = tmp_path / "screen.txt"
    res = hybrid86("run", "--fda", guest_image(FREEDOS), "--headless",
                   "--keys", "ver\\rdir\\rtype config.sys\\r", "--expect", "SHELLHIGH",
                   "--timeout", "90", "--screen-dump", str(dump))
    assert res.returncode == 0, res.stderr
    screen = dump.read_text()
    assert "KERNEL   SYS" in screen and "bytes free" in screen          # dir
    assert "SHELL=A:\\COMMAND.COM /E:512 /MSG /P" in screen            # type config.sys


def test_no_guest_instruction_runs_from_its_own_address(marker_image):
    from unicorn import UC_HOOK_CODE

    from monitor.pc import PC, PCConfig

    pc = PC(PCConfig(fda=marker_image))
    fetched = []
    # Any fetch from guest RAM would be guest code executing in place.
    pc.machine.uc.hook_add(UC_HOOK_CODE, lambda uc, a, s, _: fetched.append(a), None, 0, pc.machine.memory.ram_size - 1)
    reason = pc.run(timeout_s=60)
    pc.close()
    assert pc.machine.exit_status == 0, reason
    assert fetched == []


def test_timeout_exits_non_zero_with_a_reason():
    res = hybrid86("run", "--fda", guest_image(FREEDOS), "--headless", "--timeout", "0.5")
    assert res.returncode == 124 and "timeout" in res.stderr


def test_bench_boot_dos_prints_figures(tmp_path):
    out = tmp_path / "bench.json"
    res = hybrid86("bench", "boot-dos", "--image", guest_image(FREEDOS), "--runs", "1", "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert "hybrid86" in res.stdout and " s" in res.stdout
    figures = json.loads(out.read_text())
    assert figures["hybrid86_s"] > 0 and figures["runs"] == 1
    if shutil.which("qemu-system-i386"):
        assert figures["qemu_s"] > 0 and "ratio" in res.stdout


def test_boots_to_the_prompt_and_idles_there_without_burning_a_host_core(tmp_path):
    """AUTOEXEC.BAT ends with cls: the screen is the A:\\> prompt alone. There DOS
    waits for a key; the monitor halts the virtual CPU until the next tick."""
    import resource

    dump = tmp_path / "screen.txt"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    res = hybrid86("run", "--fda", guest_image(FREEDOS), "--headless", "--timeout", "6",
                   "--screen-dump", str(dump))
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert res.returncode == 124
    lines = [l.rstrip() for l in dump.read_text().splitlines() if l.strip()]
    assert lines == ["A:\\>"], lines
    assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s"
