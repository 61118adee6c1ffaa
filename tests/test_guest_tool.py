"""`hybrid86 guest linux` (monitor/linux/guest.py) and the cpio newc writer
(monitor/linux/cpio.py): archives parsed back, the /init script, the
assembly from a given busybox, and every refusal (with fake apt-get and
dpkg on PATH: this machine may not reach Debian's archive)."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import sys

import pytest

from monitor.guests.dos import GuestToolError
from monitor.linux import cpio
from monitor.linux import guest as tool

from test_linux_boot_protocol import make_bzimage

DUMMY_BUSYBOX = b"\x7fELF\x01\x01\x01" + b"dummy busybox " * 100


# -- cpio newc ---------------------------------------------------------------------------------

def test_cpio_round_trip_and_layout():
    entries = [cpio.directory("bin"), cpio.file("bin/hello", b"hello\n", 0o755),
               cpio.symlink("bin/hi", "hello"), cpio.char_device("dev/console", 5, 1),
               cpio.file("empty", b""), cpio.file("/abs/name", b"x" * 1001)]
    data = cpio.write(entries)
    assert len(data) % 512 == 0
    back = cpio.read(data)
    assert [e.name for e in back] == ["bin", "bin/hello", "bin/hi", "dev/console", "empty", "abs/name"]
    assert back[1].data == b"hello\n" and back[1].mode == stat.S_IFREG | 0o755
    assert back[2].data == b"hello" and stat.S_ISLNK(back[2].mode)
    assert stat.S_ISCHR(back[3].mode) and (back[3].rdevmajor, back[3].rdevminor) == (5, 1)
    assert back[0].is_dir and back[0].nlink == 2
    assert back[5].data == b"x" * 1001
    assert len({e.ino for e in back}) == len(back) and all(e.ino for e in back)


def test_cpio_header_bytes():
    """The first header field by field (buffer-format.rst), then the 4-byte
    alignment of name and data."""
    data = cpio.write([cpio.file("init", b"abc", 0o755)])
    assert data[:6] == b"070701"
    fields = [int(data[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    ino, mode, uid, gid, nlink, mtime, size, dmaj, dmin, rmaj, rmin, namesize, check = fields
    assert (mode, uid, gid, nlink, mtime, size, namesize, check) == (0o100755, 0, 0, 1, 0, 3, 5, 0)
    assert data[110:115] == b"init\0"
    assert data[115] == 0 and data[116:119] == b"abc"          # 110 + 5 -> padded to 116
    trailer = data.index(b"TRAILER!!!")
    assert data[trailer - 110:trailer - 104] == b"070701" and (trailer - 110) % 4 == 0


def test_cpio_refusals():
    with pytest.raises(cpio.CpioError):
        cpio.write([cpio.file("a", b""), cpio.file("/a", b"")])
    with pytest.raises(cpio.CpioError):
        cpio.read(b"not an archive")
    good = cpio.write([cpio.file("a", b"12345678")])
    with pytest.raises(cpio.CpioError, match="TRAILER"):
        cpio.read(good[:good.index(b"TRAILER!!!") - 110])
    with pytest.raises(cpio.CpioError, match="past the end"):
        cpio.read(good[:115])


@pytest.mark.guests
def test_cpio_reader_reads_the_shared_initramfs():
    """An archive made by GNU cpio -H newc parses with our reader."""
    from guests import guest_image

    with open(guest_image("linux/initramfs-busybox.cpio.gz"), "rb") as f:
        entries = cpio.read(gzip.decompress(f.read()))
    names = {e.name: e for e in entries}
    assert names["bin/busybox"].data.startswith(b"\x7fELF") and names["init"].data.startswith(b"#!")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio is not installed")
def test_gnu_cpio_lists_our_archive(tmp_path):
    data = tool.build_initramfs(DUMMY_BUSYBOX)
    res = subprocess.run(["cpio", "-t"], input=gzip.decompress(data), capture_output=True)
    assert res.returncode == 0, res.stderr
    assert b"bin/busybox" in res.stdout and b"init" in res.stdout


# -- the initramfs -------------------------------------------------------------------------------

def test_initramfs_holds_busybox_init_and_console():
    data = tool.build_initramfs(DUMMY_BUSYBOX)
    assert data[:2] == b"\x1f\x8b"
    entries = {e.name: e for e in cpio.read(gzip.decompress(data))}
    assert entries["bin/busybox"].data == DUMMY_BUSYBOX
    assert entries["bin/busybox"].mode == stat.S_IFREG | 0o755
    assert entries["init"].mode == stat.S_IFREG | 0o755
    assert entries["init"].data == tool.INIT_SCRIPT.encode()
    console = entries["dev/console"]
    assert stat.S_ISCHR(console.mode) and (console.rdevmajor, console.rdevminor) == (5, 1)
    for d in ("bin", "dev", "proc", "sys", "tmp", "sbin", "usr/bin", "usr/sbin"):
        assert entries[d].is_dir, d
    # Parents come before their children (the kernel creates them in order).
    names = list(entries)
    assert all(names.index(os.path.dirname(n)) < names.index(n) for n in names if "/" in n)


def test_initramfs_is_reproducible_and_takes_a_custom_init():
    assert tool.build_initramfs(DUMMY_BUSYBOX) == tool.build_initramfs(DUMMY_BUSYBOX)
    custom = b"#!/bin/busybox sh\necho mine\n"
    entries = {e.name: e for e in cpio.read(gzip.decompress(tool.build_initramfs(DUMMY_BUSYBOX, custom)))}
    assert entries["init"].data == custom


def test_the_init_script():
    script = tool.INIT_SCRIPT
    assert script.startswith("#!/bin/busybox sh\n")
    for line in ("mount -t proc proc /proc", "mount -t sysfs sysfs /sys", "mount -t devtmpfs devtmpfs /dev",
                 "--install", 'echo "LINUX-BOOT-OK $(uname -r)"', "exec sh", "poweroff -f"):
        assert line in script, line
    assert script.index("LINUX-BOOT-OK") < script.index("hybrid86.shell") < script.index("poweroff -f")
    if shutil.which("sh"):
        res = subprocess.run(["sh", "-n"], input=script.encode(), capture_output=True)
        assert res.returncode == 0, res.stderr


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="no /bin/sh")
@pytest.mark.parametrize("cmdline, shell", [("console=ttyS0", False), ("console=ttyS0 hybrid86.shell", True),
                                            ("hybrid86.shell", True), ("hybrid86.shellx", False)])
def test_the_init_script_decides_shell_or_poweroff(tmp_path, cmdline, shell):
    """Run the script's decision with a fake busybox world: /proc/cmdline is
    replaced by a file, every applet by a logging stub."""
    script = tool.INIT_SCRIPT.replace("/proc/cmdline", str(tmp_path / "cmdline"))
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "log"
    for name in ("mount", "poweroff", "sh", "uname", "mkdir"):
        p = stubs / name
        p.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\n" + ("echo 9.9.9\n" if name == "uname" else ""))
        p.chmod(0o755)
    script = script.replace("/bin/busybox ", "").replace("export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n", "")
    script = script.replace("--install -s\n", "true\n").replace("exec sh", f"exec {stubs}/sh")
    env = {"PATH": f"{stubs}:/usr/bin:/bin"}
    res = subprocess.run(["/bin/sh", "-c", script.split("\n", 1)[1]], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "LINUX-BOOT-OK 9.9.9" in res.stdout
    calls = log.read_text()
    assert ("sh" in calls.split()) == shell
    assert ("poweroff -f" in calls) == (not shell)


# -- assemble (no network) -----------------------------------------------------------------------

def test_assemble_from_a_given_busybox(tmp_path):
    kernel = tmp_path / "vmlinuz-9.9.9-1-686"
    kernel.write_bytes(make_bzimage())
    busybox = tmp_path / "busybox"
    busybox.write_bytes(DUMMY_BUSYBOX)
    out = tmp_path / "out"
    k, rd = tool.assemble(str(kernel), str(busybox), str(out))
    assert k == str(out / "vmlinuz-9.9.9-1-686") and open(k, "rb").read() == kernel.read_bytes()
    assert rd == str(out / "initramfs-busybox.cpio.gz")
    entries = {e.name: e.data for e in cpio.read(gzip.decompress(open(rd, "rb").read()))}
    assert entries["bin/busybox"] == DUMMY_BUSYBOX
    init = tmp_path / "myinit"
    init.write_bytes(b"#!/bin/busybox sh\necho hi\n")
    tool.assemble(str(kernel), str(busybox), str(out), str(init))
    entries = {e.name: e.data for e in cpio.read(gzip.decompress(open(rd, "rb").read()))}
    assert entries["init"] == b"#!/bin/busybox sh\necho hi\n"


def test_assemble_refusals(tmp_path):
    kernel = tmp_path / "k"
    kernel.write_bytes(make_bzimage())
    busybox = tmp_path / "bb"
    busybox.write_bytes(DUMMY_BUSYBOX)
    notkernel = tmp_path / "nk"
    notkernel.write_bytes(b"\0" * 4096)
    with pytest.raises(GuestToolError, match="not usable.*HdrS"):
        tool.assemble(str(notkernel), str(busybox), str(tmp_path / "o"))
    with pytest.raises(GuestToolError, match="not an ELF"):
        tool.assemble(str(kernel), str(kernel), str(tmp_path / "o"))
    bad_init = tmp_path / "init.txt"
    bad_init.write_text("echo no shebang\n")
    with pytest.raises(GuestToolError, match="--init .*#!"):
        tool.assemble(str(kernel), str(busybox), str(tmp_path / "o"), str(bad_init))
    with pytest.raises(GuestToolError, match="nope"):
        tool.assemble(str(kernel), str(tmp_path / "nope"), str(tmp_path / "o"))


# -- fetch: refusals and a full run against fake apt-get/dpkg -----------------------------------

def guest(tmp_path, *args, path: str):
    env = dict(os.environ, PATH=path)
    return subprocess.run([sys.executable, "-m", "monitor", "guest", "linux", "--out", str(tmp_path / "out"), *args],
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fake_bin(tmp_path, **scripts) -> str:
    d = tmp_path / "fakebin"
    d.mkdir(exist_ok=True)
    for name, body in scripts.items():
        p = d / name.replace("_", "-")
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(0o755)
    return str(d)


def one_line(res, *words):
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hybrid86 guest linux: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


DPKG_I386 = 'case "$1" in --print-architecture) echo amd64;; --print-foreign-architectures) echo i386;; esac\n'
DPKG_NO_I386 = 'case "$1" in --print-architecture) echo amd64;; --print-foreign-architectures) ;; esac\n'


def test_refuses_without_apt_get(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line(guest(tmp_path, path=str(empty)), "apt-get not found", "Debian")


def test_refuses_without_the_i386_architecture(tmp_path):
    path = fake_bin(tmp_path, apt_get="exit 0\n", dpkg=DPKG_NO_I386, dpkg_deb="exit 0\n")
    one_line(guest(tmp_path, path=path), "i386", "dpkg --add-architecture i386 && apt-get update")


def test_refuses_when_the_packages_cannot_be_fetched(tmp_path):
    path = fake_bin(tmp_path, dpkg=DPKG_I386, dpkg_deb="exit 0\n",
                    apt_get='echo "Ign:1 http://deb.example/debian bookworm InRelease"\n'
                            'echo "E: Unable to locate package linux-image-6.1.0-50-686-unsigned:i386" >&2\n'
                            "exit 100\n")
    res = guest(tmp_path, path=path)
    one_line(res, "apt-get download linux-image-6.1.0-50-686-unsigned:i386 busybox-static:i386 failed",
             "Unable to locate package", "apt-get update")
    assert not (tmp_path / "out").exists()


def test_refuses_a_bad_release_and_a_missing_init(tmp_path):
    path = fake_bin(tmp_path, apt_get="exit 0\n", dpkg=DPKG_I386, dpkg_deb="exit 0\n")
    one_line(guest(tmp_path, "--release", "../etc", path=path), "--release", "6.1.0-50")
    one_line(guest(tmp_path, "--init", str(tmp_path / "gone"), path=path), "--init", "gone")


def test_refuses_when_apt_get_leaves_no_package(tmp_path):
    path = fake_bin(tmp_path, apt_get="exit 0\n", dpkg=DPKG_I386, dpkg_deb="exit 0\n")
    one_line(guest(tmp_path, path=path), "left no", ".deb")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_fetch_and_assemble_with_a_fake_archive(tmp_path):
    """The whole command, with an apt-get that 'downloads' two .deb files
    built here with the real dpkg-deb."""
    debs = tmp_path / "debs"
    debs.mkdir()
    kernel = make_bzimage()
    for pkg, files in (("linux-image-6.1.0-50-686-unsigned", {"boot/vmlinuz-6.1.0-50-686": kernel}),
                       ("busybox-static", {"bin/busybox": DUMMY_BUSYBOX})):
        root = tmp_path / pkg
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {pkg}\nVersion: 1.0\nArchitecture: i386\nMaintainer: test <t@example.org>\n"
            f"Description: test package\n")
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        res = subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(debs / f"{pkg}_1.0_i386.deb")],
                             capture_output=True)
        assert res.returncode == 0, res.stderr
    log = tmp_path / "apt.log"
    path = fake_bin(tmp_path, dpkg=DPKG_I386,
                    apt_get=f'echo "$@" > {log}\ncp {debs}/*.deb .\n') + ":/usr/bin:/bin"
    res = guest(tmp_path, path=path)
    assert res.returncode == 0, res.stderr
    assert log.read_text().split() == ["download", "linux-image-6.1.0-50-686-unsigned:i386", "busybox-static:i386"]
    out = tmp_path / "out"
    assert (out / "vmlinuz-6.1.0-50-686").read_bytes() == kernel
    entries = {e.name: e.data for e in cpio.read(gzip.decompress((out / "initramfs-busybox.cpio.gz").read_bytes()))}
    assert entries["bin/busybox"] == DUMMY_BUSYBOX and b"LINUX-BOOT-OK" in entries["init"]
    assert res.stdout.split() == [str(out / "vmlinuz-6.1.0-50-686"), str(out / "initramfs-busybox.cpio.gz")]
    assert "hybrid86 run --kernel" in res.stderr


# -- hybrid86 guest linux-disk (monitor/linux/disk.py) ---------------------------------------------

from monitor.linux import disk as disktool  # noqa: E402

needs_disk_tools = pytest.mark.skipif(bool(disktool.missing_tools()),
                                      reason="mtools and syslinux are needed (apt-get install mtools syslinux)")


def linux_disk(tmp_path, *args, path: str | None = None):
    env = dict(os.environ) if path is None else dict(os.environ, PATH=path)
    return subprocess.run([sys.executable, "-m", "monitor", "guest", "linux-disk", *args],
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _one_line_disk(res, *words):
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("hybrid86 guest linux-disk: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@needs_disk_tools
def test_linux_disk_holds_syslinux_the_kernel_the_initrd_and_the_config(tmp_path):
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(make_bzimage())
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd bytes " * 1000)
    out = tmp_path / "d" / "hd.img"
    res = linux_disk(tmp_path, "--kernel", str(kernel), "--initrd", str(initrd), "--out", str(out),
                     "--append", "console=ttyS0 hybrid86.shell")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out) and "--hda" in res.stderr
    image = out.read_bytes()
    assert len(image) % disktool.CYLINDER_BYTES == 0
    assert image[510:512] == b"\x55\xaa" and b"SYSLINUX" in image[:512]
    listing = subprocess.run(["mdir", "-a", "-b", "-i", str(out), "::"], capture_output=True, text=True).stdout
    for name in ("VMLINUZ", "INITRD.GZ", "SYSLINUX.CFG", "LDLINUX.SYS", "LDLINUX.C32"):
        assert name.lower() in listing.lower(), listing
    cfg = subprocess.run(["mtype", "-i", str(out), "::syslinux.cfg"], capture_output=True, text=True).stdout
    assert "KERNEL vmlinuz" in cfg and "INITRD initrd.gz" in cfg and "APPEND console=ttyS0 hybrid86.shell" in cfg
    copied = subprocess.run(["mtype", "-i", str(out), "::vmlinuz"], capture_output=True).stdout
    assert copied == kernel.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["hd.img"]          # no scratch file left


def test_linux_disk_refusals(tmp_path):
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(make_bzimage())
    _one_line_disk(linux_disk(tmp_path, "--out", str(tmp_path / "x.img")), "--kernel")
    not_a_kernel = tmp_path / "notes.txt"
    not_a_kernel.write_text("hello")
    if not disktool.missing_tools():
        _one_line_disk(linux_disk(tmp_path, "--kernel", str(not_a_kernel), "--out", str(tmp_path / "x.img")),
                       "not usable")
        _one_line_disk(linux_disk(tmp_path, "--kernel", str(tmp_path / "absent"), "--out", str(tmp_path / "x.img")),
                       "absent")
    assert not (tmp_path / "x.img").exists()
    # without the host tools: one line naming the Debian packages
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_disk(linux_disk(tmp_path, "--kernel", str(kernel), "--out", str(tmp_path / "x.img"), path=str(empty)),
                   "apt-get install", "syslinux", "mtools")
