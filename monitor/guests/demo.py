"""Build the hybrid86 demo guest: a bootable 1.44 MB floppy image.

The demo guest is this project's own small x86 "operating system", written in
NASM assembly (``monitor/guests/demo/*.asm``, ``*.inc``).  It boots through the
PC BIOS, enters protected mode and walks the CPU through what a virtual
machine monitor must get right: 16-bit protected mode, the IDT and exceptions,
paging (4 KiB and 4 MiB pages, A/D bits, INVLPG, CR0.WP), demand paging,
preempted ring-3 tasks with ``int 0x80`` and SYSENTER system calls, a V8086
task calling the BIOS through a small V86 monitor, and the top 4 MiB of the
linear address space, where hybrid86 keeps its translation cache.  Each step
prints ``step NN <name>: ok`` (or ``: FAIL <detail>``) to COM1, port 0xE9 and
the VGA text screen; after the last one the guest prints ``DEMO_MARKER`` and
writes 0 to port 0xF4 (1 on failure).  See ``docs/demo-guest.md``.

``build_demo_image()`` assembles it with ``nasm``; images are cached under
``$XDG_CACHE_HOME/hybrid86`` (default ``~/.cache/hybrid86``), keyed by a hash
of the sources and of the nasm version.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib.resources import files

from .dos import GuestToolError, _need, _run

DEMO_MARKER = b"HYBRID86-DEMO-OK"

#: The demo's steps, in order; step N prints "step NN <STEP_NAMES[N-1]>: ok".
STEP_NAMES: tuple[str, ...] = (
    "real-mode",
    "protected-mode",
    "pm16",
    "idt-exceptions",
    "paging",
    "demand-paging",
    "ring3-tasks",
    "v86-bios",
    "monitor-region",
    "finish",
)

FLOPPY_SIZE = 1_474_560          # 80 cylinders x 2 heads x 18 sectors x 512 bytes
SECTOR = 512
KERNEL_MAX = 40 * 1024           # the kernel lives at 0x8000 and must end below 0x12000
_SUFFIXES = (".asm", ".inc")


def step_lines() -> list[str]:
    """The line each step prints when it passes, in order."""
    return [f"step {n:02d} {name}: ok" for n, name in enumerate(STEP_NAMES, 1)]


def exit_status_ok(status: int, *, qemu: bool) -> bool:
    """Whether a process exit status means the demo passed.  The guest writes
    0 to port 0xF4 on success: hybrid86 exits with 0, QEMU's isa-debug-exit
    with (0 << 1) | 1 = 1."""
    return status == (1 if qemu else 0)


def _sources() -> dict[str, bytes]:
    directory = files("monitor.guests").joinpath("demo")
    found = {
        entry.name: entry.read_bytes()
        for entry in directory.iterdir()
        if entry.is_file() and entry.name.endswith(_SUFFIXES)
    }
    for needed in ("boot.asm", "kernel.asm"):
        if needed not in found:
            raise GuestToolError(f"demo guest source {needed} is missing from monitor/guests/demo")
    return found


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hybrid86")


def _assemble(nasm: str, sources: dict[str, bytes]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in sources.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        include = tmp + os.sep
        kernel_bin = os.path.join(tmp, "kernel.bin")
        _run([nasm, "-f", "bin", "-I", include, "-o", kernel_bin, os.path.join(tmp, "kernel.asm")],
             "assembling the demo kernel")
        with open(kernel_bin, "rb") as f:
            kernel = f.read()
        if not kernel or len(kernel) > KERNEL_MAX:
            raise GuestToolError(f"demo kernel is {len(kernel)} bytes; it must be 1..{KERNEL_MAX}")
        sectors = -(-len(kernel) // SECTOR)
        boot_bin = os.path.join(tmp, "boot.bin")
        _run([nasm, "-f", "bin", "-I", include, f"-DKERNEL_SECTORS={sectors}", "-o", boot_bin,
              os.path.join(tmp, "boot.asm")], "assembling the demo boot sector")
        with open(boot_bin, "rb") as f:
            boot = f.read()
    if len(boot) != SECTOR or boot[510:] != b"\x55\xaa":
        raise GuestToolError("demo boot sector is not 512 bytes ending in 55 AA")
    image = boot + kernel.ljust(sectors * SECTOR, b"\0")
    return image.ljust(FLOPPY_SIZE, b"\0")


def build_demo_image(path: str | os.PathLike | None = None, *, cache: bool = True) -> bytes | str:
    """Assemble the demo guest into a 1,474,560-byte floppy image.

    Returns the image bytes, or, when ``path`` is given, writes the image
    there and returns the path (as a string).  Raises ``GuestToolError``
    when nasm is missing or fails.  ``cache=False`` skips the user cache.
    """
    nasm = _need("nasm", "nasm")
    sources = _sources()
    digest = hashlib.sha256()
    digest.update(_run([nasm, "-v"], "running nasm -v"))
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name] + b"\0")
    cached = os.path.join(_cache_dir(), f"demo-{digest.hexdigest()[:32]}.img")

    image = None
    if cache:
        try:
            with open(cached, "rb") as f:
                image = f.read()
        except OSError:
            image = None
        if image is not None and (len(image) != FLOPPY_SIZE or image[510:512] != b"\x55\xaa"):
            image = None
    if image is None:
        image = _assemble(nasm, sources)
        if cache:
            try:
                os.makedirs(os.path.dirname(cached), exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cached), suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(image)
                os.replace(tmp, cached)
            except OSError:
                pass                    # a cache we cannot write is no error

    if path is None:
        return image
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(image)
    return path


if __name__ == "__main__":          # python -m monitor.guests.demo OUT.img
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m monitor.guests.demo OUT.img")
    print(build_demo_image(sys.argv[1], cache=False))
