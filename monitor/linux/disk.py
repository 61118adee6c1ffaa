"""`hybrid86 guest linux-disk`: a bootable hard-disk image whose boot loader
(SYSLINUX) loads a Linux kernel and initrd through the BIOS's int 13h.

The image is a "superfloppy": one FAT file system from sector 0, no
partition table, with the geometry a PC BIOS gives an unpartitioned disk
(16 heads, 63 sectors per track).  The host tools are Debian's:

* ``mformat`` and ``mcopy`` (package ``mtools``) make the file system and
  copy the files into it without mounting anything;
* ``syslinux --install`` (package ``syslinux``, the mtools installer) writes
  SYSLINUX's boot sector and ``ldlinux.sys``/``ldlinux.c32``.

``syslinux.cfg`` boots ``vmlinuz`` with ``initrd.gz`` and the command line
given (default ``console=ttyS0``).  Each failure raises ``GuestToolError``
with one line saying what failed and what to do; the kernel is checked with
the boot-protocol parser first, and an existing output file is only
replaced when the whole image was built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from monitor.guests.dos import GuestToolError

from .guest import read_kernel

HEADS, SECTORS = 16, 63
CYLINDER_BYTES = HEADS * SECTORS * 512
TOOLS = {"mformat": "mtools", "mcopy": "mtools", "syslinux": "syslinux"}
#: SYSLINUX's command-line limit is far above this; the kernel's is 2048
#: bytes with everything SYSLINUX adds (BOOT_IMAGE=..., initrd=...).
MAX_APPEND = 1800


def missing_tools() -> list[str]:
    """The host tools the disk builder needs and cannot find."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def config(append: str) -> str:
    return ("DEFAULT linux\nPROMPT 0\nTIMEOUT 0\n"
            "LABEL linux\n  KERNEL vmlinuz\n  INITRD initrd.gz\n"
            f"  APPEND {append}\n")


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise GuestToolError(f"{cmd[0]}: {exc.strerror}") from exc
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise GuestToolError(f"{' '.join(cmd[:2])} failed: {why[-1] if why else f'exit status {proc.returncode}'}")


def build_boot_disk(kernel_path: str, initrd_path: str | None, out_path: str,
                    append: str = "console=ttyS0") -> str:
    """Write a SYSLINUX hard-disk image booting `kernel_path` (and
    `initrd_path`) to `out_path`; returns `out_path`."""
    missing = missing_tools()
    if missing:
        packages = sorted({TOOLS[t] for t in missing})
        raise GuestToolError(f"{', '.join(missing)} not found: install the Debian package(s) "
                             f"{' '.join(packages)} (apt-get install {' '.join(packages)})")
    if "\n" in append or len(append) > MAX_APPEND:
        raise GuestToolError(f"--append: one line of at most {MAX_APPEND} characters")
    kernel = read_kernel(kernel_path)
    try:
        initrd_size = os.path.getsize(initrd_path) if initrd_path else 0
    except OSError as exc:
        raise GuestToolError(f"{exc.filename}: {exc.strerror}") from exc
    payload = len(kernel) + initrd_size + 256 * 1024                  # + FAT, ldlinux, slack
    cylinders = max(20, -(-payload * 9 // 8 // CYLINDER_BYTES))      # 1/8 spare
    out_dir = os.path.dirname(os.path.abspath(out_path))
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hybrid86-disk-", dir=out_dir)
    except OSError as exc:
        raise GuestToolError(f"--out {out_path}: {exc.strerror}") from exc
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)                 # (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as f:
            f.truncate(cylinders * CYLINDER_BYTES)
        _run(["mformat", "-i", tmp, "-t", str(cylinders), "-h", str(HEADS), "-s", str(SECTORS),
              "-H", "0", "-v", "HYBRID86", "::"])
        _run(["syslinux", "--install", tmp])
        with tempfile.TemporaryDirectory(prefix="hybrid86-disk-") as work:
            cfg = os.path.join(work, "syslinux.cfg")
            with open(cfg, "w") as f:
                f.write(config(append))
            _run(["mcopy", "-i", tmp, cfg, "::syslinux.cfg"])
        _run(["mcopy", "-i", tmp, kernel_path, "::vmlinuz"])
        if initrd_path:
            _run(["mcopy", "-i", tmp, initrd_path, "::initrd.gz"])
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return out_path
