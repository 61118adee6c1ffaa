"""`hybrid86 guest linux`: a Linux kernel and a busybox initramfs from Debian's
i386 packages.

Two halves, so that the second can be tested without Debian's archive:

* **fetch** (``fetch_packages``): ``apt-get download
  linux-image-<release>-686-unsigned:i386 busybox-static:i386`` into a
  scratch folder, ``dpkg-deb -x`` each package, and return the kernel
  (``boot/vmlinuz-<release>-686``) and busybox (``bin/busybox``).  apt only
  downloads ``:i386`` packages when the i386 architecture is configured
  (``dpkg --add-architecture i386`` and ``apt-get update``); the tool checks
  that first and says what to run.
* **assemble** (``build_initramfs``, ``assemble``): a gzip'ed cpio newc
  archive (``monitor/linux/cpio.py``, no cpio binary needed) with
  ``/bin/busybox``, ``/init`` (``INIT_SCRIPT``, or the user's file) and the
  directories and ``/dev/console`` node an initramfs needs; the kernel is
  checked with the boot-protocol parser and copied.

Every failure raises ``GuestToolError`` with one line saying what failed and
what to do.  The output is deterministic for given inputs (timestamps 0).
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from monitor.guests.dos import GuestToolError

from . import cpio
from .bootproto import LinuxBootError, parse_header

DEFAULT_RELEASE = "6.1.0-50"
FLAVOUR = "686"
KERNEL_NAME = "vmlinuz-{release}-" + FLAVOUR
INITRAMFS_NAME = "initramfs-busybox.cpio.gz"
BOOT_MARKER = "LINUX-BOOT-OK"
SHELL_OPTION = "hybrid86.shell"

#: The default /init: busybox applets, proc/sys/devtmpfs, the marker on the
#: console, then a shell (``hybrid86.shell`` on the command line) or power off.
INIT_SCRIPT = f"""#!/bin/busybox sh
# /init of the hybrid86 Linux guest (monitor/linux/guest.py, docs/linux-boot.md)
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
echo "{BOOT_MARKER} $(uname -r)"
case " $(cat /proc/cmdline) " in
*" {SHELL_OPTION} "*)
    exec sh
    ;;
esac
poweroff -f
"""

_RELEASE = re.compile(r"^[0-9][0-9A-Za-z.+~-]*$")


def kernel_package(release: str) -> str:
    return f"linux-image-{release}-{FLAVOUR}-unsigned:i386"


BUSYBOX_PACKAGE = "busybox-static:i386"


@dataclass
class Fetched:
    kernel: str          # path of the extracted vmlinuz
    busybox: str         # path of the extracted static busybox


def _last_line(text: bytes) -> str:
    lines = [l.strip() for l in text.decode(errors="replace").splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("E:")]
    return (errors or lines or ["(no message)"])[-1]


def check_release(release: str) -> None:
    if not _RELEASE.match(release):
        raise GuestToolError(f"--release {release!r}: expected a Debian kernel ABI name such as {DEFAULT_RELEASE}")


def i386_configured(dpkg: str) -> bool:
    """Whether apt can fetch ``:i386`` packages here (native or foreign arch)."""
    archs: set[str] = set()
    for args in ([dpkg, "--print-architecture"], [dpkg, "--print-foreign-architectures"]):
        res = subprocess.run(args, capture_output=True)
        if res.returncode == 0:
            archs.update(res.stdout.decode().split())
    return "i386" in archs


def fetch_packages(release: str, workdir: str) -> Fetched:
    """Download and unpack the two Debian packages into ``workdir``."""
    check_release(release)
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise GuestToolError("apt-get not found: this tool downloads Debian's i386 kernel and busybox-static "
                             "packages with apt-get; run it on Debian or Ubuntu (or pass images to "
                             "'hybrid86 run --kernel/--initrd' yourself)")
    dpkg, dpkg_deb = shutil.which("dpkg"), shutil.which("dpkg-deb")
    if dpkg is None or dpkg_deb is None:
        raise GuestToolError("dpkg/dpkg-deb not found: install Debian's dpkg package (it unpacks the downloads)")
    if not i386_configured(dpkg):
        raise GuestToolError("apt has no i386 architecture, so it cannot download ':i386' packages: run "
                             "'dpkg --add-architecture i386 && apt-get update' as root, then try again")
    packages = [kernel_package(release), BUSYBOX_PACKAGE]
    res = subprocess.run([apt_get, "download", *packages], cwd=workdir, capture_output=True)
    if res.returncode != 0:
        raise GuestToolError(
            f"apt-get download {' '.join(packages)} failed ({_last_line(res.stderr + res.stdout)}); check that "
            f"Debian's archive is reachable and the lists are current (apt-get update) and that release "
            f"{release} exists (apt-cache search 'linux-image-.*-{FLAVOUR}-unsigned')")
    trees = {}
    for stem, pattern in (("kernel", f"linux-image-{release}-{FLAVOUR}-unsigned_*.deb"),
                          ("busybox", "busybox-static_*.deb")):
        debs = sorted(glob.glob(os.path.join(workdir, pattern)))
        if not debs:
            raise GuestToolError(f"apt-get download reported success but left no {pattern} in {workdir}")
        tree = os.path.join(workdir, stem)
        res = subprocess.run([dpkg_deb, "-x", debs[-1], tree], capture_output=True)
        if res.returncode != 0:
            raise GuestToolError(f"dpkg-deb -x {os.path.basename(debs[-1])} failed: {_last_line(res.stderr)}")
        trees[stem] = tree
    kernel = os.path.join(trees["kernel"], "boot", KERNEL_NAME.format(release=release))
    if not os.path.isfile(kernel):
        found = sorted(glob.glob(os.path.join(trees["kernel"], "boot", "vmlinuz-*")))
        if not found:
            raise GuestToolError(f"the package {packages[0]} holds no boot/vmlinuz-*")
        kernel = found[-1]
    busybox = os.path.join(trees["busybox"], "bin", "busybox")
    if not os.path.isfile(busybox):
        raise GuestToolError(f"the package {BUSYBOX_PACKAGE} holds no bin/busybox")
    return Fetched(kernel, busybox)


def check_init(data: bytes, name: str) -> None:
    if not (data.startswith(b"#!") or data.startswith(b"\x7fELF")):
        raise GuestToolError(f"--init {name}: neither a script starting with #! nor an ELF executable; "
                             f"the kernel could not run it as /init")


def initramfs_entries(busybox: bytes, init: bytes | None = None) -> list[cpio.Entry]:
    init = INIT_SCRIPT.encode() if init is None else init
    return [
        cpio.directory("bin"),
        cpio.file("bin/busybox", busybox, 0o755),
        cpio.directory("dev"),
        cpio.char_device("dev/console", 5, 1, 0o600),
        cpio.file("init", init, 0o755),
        cpio.directory("proc"),
        cpio.directory("root", 0o700),
        cpio.directory("sbin"),
        cpio.directory("sys"),
        cpio.directory("tmp", 0o1777),
        cpio.directory("usr"),
        cpio.directory("usr/bin"),
        cpio.directory("usr/sbin"),
    ]


def build_initramfs(busybox: bytes, init: bytes | None = None) -> bytes:
    """The gzip'ed newc initramfs for ``busybox`` (a static binary) and ``init``
    (default ``INIT_SCRIPT``)."""
    return gzip.compress(cpio.write(initramfs_entries(busybox, init)), compresslevel=9, mtime=0)


def read_kernel(kernel_path: str) -> bytes:
    """The kernel's bytes, checked with the boot-protocol parser."""
    try:
        with open(kernel_path, "rb") as f:
            kernel = f.read()
    except OSError as exc:
        raise GuestToolError(f"{exc.filename}: {exc.strerror}") from exc
    try:
        parse_header(kernel, os.path.basename(kernel_path))
    except LinuxBootError as exc:
        raise GuestToolError(f"the kernel is not usable: {exc}") from exc
    return kernel


def assemble(kernel_path: str, busybox_path: str, out_dir: str, init_path: str | None = None) -> tuple[str, str]:
    """Check the kernel, build the initramfs, write both into ``out_dir``;
    return their paths."""
    kernel = read_kernel(kernel_path)
    try:
        with open(busybox_path, "rb") as f:
            busybox = f.read()
    except OSError as exc:
        raise GuestToolError(f"{exc.filename}: {exc.strerror}") from exc
    if not busybox.startswith(b"\x7fELF"):
        raise GuestToolError(f"{busybox_path}: not an ELF executable (expected a static busybox)")
    init = None
    if init_path is not None:
        try:
            with open(init_path, "rb") as f:
                init = f.read()
        except OSError as exc:
            raise GuestToolError(f"--init {init_path}: {exc.strerror}") from exc
        check_init(init, init_path)
    try:
        os.makedirs(out_dir, exist_ok=True)
        kernel_out = os.path.join(out_dir, os.path.basename(kernel_path))
        initrd_out = os.path.join(out_dir, INITRAMFS_NAME)
        with open(kernel_out, "wb") as f:
            f.write(kernel)
        with open(initrd_out, "wb") as f:
            f.write(build_initramfs(busybox, init))
    except OSError as exc:
        raise GuestToolError(f"--out {out_dir}: {exc.strerror}") from exc
    return kernel_out, initrd_out


def build_linux_guest(out_dir: str, release: str = DEFAULT_RELEASE, init_path: str | None = None) -> tuple[str, str]:
    """fetch + assemble; returns (kernel, initramfs) paths in ``out_dir``."""
    check_release(release)
    if init_path is not None and not os.path.isfile(init_path):
        raise GuestToolError(f"--init {init_path}: no such file")
    with tempfile.TemporaryDirectory(prefix="hybrid86-linux-") as work:
        fetched = fetch_packages(release, work)
        return assemble(fetched.kernel, fetched.busybox, out_dir, init_path)
