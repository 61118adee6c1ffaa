"""The command line, as a user runs it (a subprocess per call)."""

from __future__ import annotations

import json
import shutil
import re
import subprocess
import sys

import pytest

import _native


def hybrid86(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120)


def test_run_help_documents_the_options():
    res = hybrid86("run", "--help")
    assert res.returncode == 0
    for option in ("--fda", "--hda", "--memory", "--boot", "--headless", "--expect", "--timeout",
                   "--keys", "--screen-dump", "--debugcon", "--serial", "--stats", "--writable", "Ctrl-]"):
        assert option in res.stdout, option


def test_help_names_every_subcommand():
    res = hybrid86("--help")
    assert res.returncode == 0
    for name in ("info", "run", "fuzz", "bench"):
        assert name in res.stdout


def test_version():
    res = hybrid86("--version")
    assert res.returncode == 0 and res.stdout.startswith("hybrid86 ")


def test_info_prints_versions_and_the_calibrated_offsets():
    res = hybrid86("info", "--json")
    assert res.returncode == 0, res.stderr
    facts = json.loads(res.stdout)
    assert facts["unicorn_binding"] == "2.1.4" and facts["capstone_binding"] == "5.0.9"
    assert facts["same_libunicorn"] is True
    assert facts["context_layout"] == _native.calibrate().as_dict()
    text = hybrid86("info")
    assert text.returncode == 0 and f"old_exception     {facts['context_layout']['old_exception']}" in text.stdout


def test_bench_boot_linux_without_the_images_says_where_it_looked(tmp_path):
    res = hybrid86("bench", "boot-linux", "--image", str(tmp_path), "--runs", "1")
    assert res.returncode == 2 and res.stdout == ""
    assert "vmlinuz-6.1.0-50-686 not found" in res.stderr and "--image" in res.stderr


@pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed")
def test_bench_modes_prints_a_ratio_per_kind_of_code(tmp_path):
    out = tmp_path / "modes.json"
    res = hybrid86("bench", "modes", "--iterations", "4000", "--runs", "1", "--json", str(out))
    assert res.returncode == 0, res.stderr
    for name, world in (("ring3", "DE"), ("ring0", "BT"), ("real", "BT")):
        assert re.search(rf"^{name}\s+{world}\s+[\d.]+\s+[\d.]+\s+[\d.]+", res.stdout, re.M), res.stdout
    figures = json.loads(out.read_text())["modes"]
    assert figures["ring3"]["de_instructions"] > 50_000 and figures["ring3"]["bt_instructions"] < 1_000
    assert figures["ring0"]["de_instructions"] == 0 and figures["ring0"]["bt_instructions"] > 50_000
    assert figures["ring0"]["callouts"].get("ret", 0) == 0        # returns stay in the TC
    assert all(f["ratio"] > 0 for f in figures.values())
    if shutil.which("qemu-system-i386"):                            # each image under QEMU too
        assert all(f["qemu_ns_per_iteration"] > 0 and f["bare_vs_qemu"] > 0 for f in figures.values())
        assert "vs qemu" in res.stdout
    else:
        assert "qemu-system-i386 not installed" in res.stdout


@pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed")
def test_bench_modes_floppy_loads_the_image_at_0x7c00_from_sector_2():
    from monitor import bench_modes

    image = bench_modes.build(1, 1000)
    disk = bench_modes.floppy(image)
    assert len(disk) == 1474560 and disk[510:512] == b"\x55\xaa"
    assert disk[512:512 + len(image)] == image and not any(disk[512 + len(image):1024 + len(image)])
    boot = disk[:512]
    sectors = -(-len(image) // 512)
    assert bytes([sectors, 0x02]) in boot and b"\xcd\x13" in boot      # mov ax, 0x02NN; int 13h
    assert b"\xe6\x21" in boot and b"\xe6\xa1" in boot                 # both 8259s masked


def test_fuzz_runs_a_small_campaign_in_every_mode():
    res = hybrid86("fuzz", "--mode", "all", "--examples", "30", "--seed", "1", "--quiet")
    assert res.returncode == 0, res.stderr
    text = res.stdout + res.stderr
    for mode in ("real", "pm16", "pm32", "ring3", "v86"):
        assert f"mode {mode}: 30 examples" in text
    assert "total: 150 examples" in text and "0 mismatch" in text
    res = hybrid86("fuzz", "--mode", "pm32", "--examples", "5")
    assert res.returncode == 0 and "mode pm32: 5 examples" in res.stdout


def test_bad_option_is_a_usage_error():
    res = hybrid86("info", "--no-such-option")
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr


def test_no_subcommand_prints_help_and_fails():
    res = hybrid86()
    assert res.returncode == 2 and "COMMAND" in res.stdout
