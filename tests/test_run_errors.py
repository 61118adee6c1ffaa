"""`hybrid86 run` with bad input: one line naming the problem, a non-zero exit,
and the image untouched."""

from __future__ import annotations

import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "monitor", "run", *args], capture_output=True, text=True, timeout=60)


def one_line_error(res, *words):
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_missing_image(tmp_path):
    one_line_error(run("--fda", str(tmp_path / "nope.img"), "--headless"), "nope.img")


def test_size_no_floppy_geometry_fits(tmp_path):
    img = tmp_path / "odd.img"
    img.write_bytes(b"\0" * 1000)
    one_line_error(run("--fda", str(img), "--headless"), "odd.img")


def test_empty_image(tmp_path):
    img = tmp_path / "empty.img"
    img.write_bytes(b"")
    one_line_error(run("--fda", str(img), "--headless"), "empty.img")


def test_not_bootable_and_not_modified(tmp_path):
    img = tmp_path / "blank.img"
    img.write_bytes(b"\0" * 1474560)
    one_line_error(run("--fda", str(img), "--headless"), "blank.img", "55 aa")
    assert img.read_bytes() == b"\0" * 1474560


def test_unreadable_image(tmp_path):
    one_line_error(run("--fda", str(tmp_path), "--headless"), str(tmp_path))   # a directory


def test_boot_drive_without_its_image():
    # (no image at all boots the built-in demo guest: tests/test_demo_guest.py)
    one_line_error(run("--headless", "--boot", "c"), "--hda")


def test_bad_option_values(tmp_path):
    img = tmp_path / "x.img"
    img.write_bytes(b"\0" * 510 + b"\x55\xaa" + b"\0" * (1474560 - 512))
    res = run("--fda", str(img), "--boot", "z")
    assert res.returncode == 2 and "invalid choice" in res.stderr
    res = run("--fda", str(img), "--memory", "abc")
    assert res.returncode == 2 and "invalid int value" in res.stderr
    one_line_error(run("--hda", str(img), "--boot", "a", "--headless"), "--boot a")
    one_line_error(run("--fda", str(img), "--keys", "\\q", "--headless"), "--keys")
    one_line_error(run("--fda", str(img), "--serial", "tcp:1234", "--headless"), "--serial")


def test_interactive_needs_a_terminal(tmp_path):
    from guests import guest_image

    img = guest_image("freedos/freedos-boot-1440k.img")
    res = subprocess.run([sys.executable, "-m", "monitor", "run", "--fda", img], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    one_line_error(res, "terminal")
