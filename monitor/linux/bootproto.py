"""The Linux/x86 boot protocol, 16-bit entry (Documentation/arch/x86/boot.rst).

``prepare(kernel, initrd, cmdline, memory_size)`` reads and checks a bzImage
(and an initrd and a command line) against the machine and returns a
``LinuxBoot``: every address decided, nothing written yet.  Bad input raises
``LinuxBootError`` with one line naming the option, the file and what to do.

``LinuxBoot`` is the BIOS's direct-boot hook (``monitor/bios/post.py``): after
POST, ``boot(ctx)`` writes the images into guest RAM, fills the loader's
fields of the setup header, and sets the registers the kernel's real-mode
setup code expects.  That code then runs through the binary translator like
any other real-mode code, calling this BIOS (int 10h, int 15h E820, ...),
and jumps to the protected-mode kernel at 0x100000 itself.

Memory layout (boot.rst "The Linux/x86 Boot Protocol", "Loading the rest of
the kernel", with X = 0x90000)::

    0x090000 + 0          the real-mode part: boot sector + setup_sects sectors
    0x090000 + 0xDE00     heap_end_ptr (heap_end - 0x200)
    0x090000 + 0xE000     heap_end = the real-mode stack top; the command line
    0x09FC00              the BIOS's EBDA (left alone)
    0x100000              the protected-mode kernel (code32_start)
    page aligned, top     the initrd, as high as initrd_addr_max and RAM allow
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

# --- the setup header: offsets in the kernel file and in the zero page ------------------
OFF_SETUP_SECTS = 0x1F1     # u8: sectors of setup after the boot sector (0 means 4)
OFF_SYSSIZE = 0x1F4         # u32 (2.04+): protected-mode size in 16-byte paragraphs
OFF_VID_MODE = 0x1FA        # u16: video mode; 0xFFFF = "normal"
OFF_BOOT_FLAG = 0x1FE       # u16: 0xAA55
OFF_JUMP = 0x200            # u16: the short jump the kernel is entered through
OFF_HEADER = 0x202          # u32: "HdrS"
OFF_VERSION = 0x206         # u16: protocol version, major.minor as 0xMMmm
OFF_KERNEL_VERSION = 0x20E  # u16: pointer to the version string, minus 0x200
OFF_TYPE_OF_LOADER = 0x210  # u8: 0xFF = undefined boot loader
OFF_LOADFLAGS = 0x211       # u8
OFF_CODE32_START = 0x214    # u32: the 32-bit entry point
OFF_RAMDISK_IMAGE = 0x218   # u32: initrd address
OFF_RAMDISK_SIZE = 0x21C    # u32: initrd size
OFF_HEAP_END_PTR = 0x224    # u16 (2.01+): end of the setup heap/stack, minus 0x200
OFF_CMD_LINE_PTR = 0x228    # u32 (2.02+): linear address of the command line
OFF_INITRD_ADDR_MAX = 0x22C # u32 (2.03+): highest address the initrd may occupy
OFF_KERNEL_ALIGNMENT = 0x230  # u32 (2.05+)
OFF_RELOCATABLE = 0x234     # u8 (2.05+)
OFF_XLOADFLAGS = 0x236      # u16 (2.12+)
OFF_CMDLINE_SIZE = 0x238    # u32 (2.06+): longest command line, without its NUL
OFF_PREF_ADDRESS = 0x258    # u64 (2.10+): preferred load address
OFF_INIT_SIZE = 0x260       # u32 (2.10+): memory the kernel needs from where it runs
HEADER_END = 0x264          # the fields above end here

HDRS = b"HdrS"
LOADED_HIGH = 0x01          # loadflags: protected-mode part at 0x100000 (bzImage)
CAN_USE_HEAP = 0x80         # loadflags: heap_end_ptr is valid
XLF_KERNEL_64 = 0x01

MIN_VERSION = 0x0204        # syssize is 32 bits from 2.04 on; older kernels are refused
DEFAULT_INITRD_ADDR_MAX = 0x37FFFFFF   # boot.rst, protocols before 2.03
DEFAULT_CMDLINE_SIZE = 255             # boot.rst, protocols before 2.06
TYPE_OF_LOADER = 0xFF       # "undefined" (no assigned loader ID)
VID_MODE_NORMAL = 0xFFFF

SECTOR = 512
REAL_MODE_BASE = 0x90000    # X: the real-mode part
REAL_MODE_SEG = REAL_MODE_BASE >> 4
REAL_MODE_MAX = 0x8000      # setup code and boot sector: at most X+0x8000
HEAP_END = 0xE000           # offset from X: heap end, stack top, command line
HEAP_END_PTR = HEAP_END - 0x200
CMDLINE_ADDR = REAL_MODE_BASE + HEAP_END
KERNEL_ADDR = 0x100000      # the protected-mode kernel
PAGE = 0x1000
MIB = 1 << 20


class LinuxBootError(ValueError):
    """Input the boot protocol cannot use: one line, naming the option and file."""


def _u8(b: bytes, off: int) -> int:
    return b[off]


def _u16(b: bytes, off: int) -> int:
    return struct.unpack_from("<H", b, off)[0]


def _u32(b: bytes, off: int) -> int:
    return struct.unpack_from("<I", b, off)[0]


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


@dataclass
class SetupHeader:
    """The fields of a kernel's setup header this loader reads."""

    version: int
    setup_sects: int            # as the kernel gives it (0 stays 0 here)
    syssize: int
    loadflags: int
    code32_start: int
    initrd_addr_max: int
    cmdline_size: int
    kernel_alignment: int
    relocatable: bool
    xloadflags: int
    pref_address: int
    init_size: int
    boot_flag: int
    kernel_version: str

    @property
    def version_text(self) -> str:
        return f"{self.version >> 8}.{self.version & 0xFF:02d}"

    @property
    def setup_size(self) -> int:
        """Bytes of the real-mode part: the boot sector and the setup sectors."""
        return ((self.setup_sects or 4) + 1) * SECTOR

    @property
    def pm_size(self) -> int:
        """Bytes of the protected-mode part the header announces."""
        return self.syssize * 16

    def kernel_end(self, pm_size: int) -> int:
        """One past the highest byte the kernel uses before it reads its memory
        map: the loaded image, and (2.10+) init_size bytes from where it will
        run (the higher of pref_address and the load address aligned to
        kernel_alignment; boot.rst on init_size)."""
        end = KERNEL_ADDR + pm_size
        if self.version >= 0x020A and self.init_size:
            runtime = KERNEL_ADDR
            if self.relocatable and self.kernel_alignment:
                align = self.kernel_alignment
                runtime = (KERNEL_ADDR + align - 1) // align * align
            runtime = max(runtime, self.pref_address)
            end = max(end, runtime + self.init_size)
        return end


def parse_header(data: bytes, name: str = "--kernel") -> SetupHeader:
    """Read and check a bzImage's setup header.  ``name`` prefixes every error."""
    if len(data) < OFF_HEADER + 4 or data[OFF_HEADER:OFF_HEADER + 4] != HDRS:
        raise LinuxBootError(
            f"{name}: not a Linux x86 kernel image (no 'HdrS' boot-protocol header at offset 0x202); "
            f"give a bzImage such as /boot/vmlinuz-*")
    if len(data) < OFF_VERSION + 2:
        raise LinuxBootError(f"{name}: truncated: the file ends inside the setup header")
    version = _u16(data, OFF_VERSION)
    if version < MIN_VERSION:
        raise LinuxBootError(
            f"{name}: boot protocol {version >> 8}.{version & 0xFF:02d} is too old; hybrid86 loads "
            f"protocol 2.04 or later (Linux 2.6.14 and newer)")
    if len(data) < HEADER_END:
        raise LinuxBootError(f"{name}: truncated: {len(data)} bytes end inside the setup header")

    def field(off: int, size: int, since: int, default: int = 0) -> int:
        if version < since:
            return default
        return {1: _u8, 2: _u16, 4: _u32, 8: lambda b, o: struct.unpack_from("<Q", b, o)[0]}[size](data, off)

    kv_ptr = _u16(data, OFF_KERNEL_VERSION)
    kernel_version = ""
    if kv_ptr:
        at = kv_ptr + 0x200
        end = data.find(b"\0", at, at + 256)
        if 0 <= at < len(data) and end > at:
            kernel_version = data[at:end].decode("ascii", "replace")
    hdr = SetupHeader(
        version=version,
        setup_sects=_u8(data, OFF_SETUP_SECTS),
        syssize=_u32(data, OFF_SYSSIZE),
        loadflags=_u8(data, OFF_LOADFLAGS),
        code32_start=_u32(data, OFF_CODE32_START),
        initrd_addr_max=field(OFF_INITRD_ADDR_MAX, 4, 0x0203, DEFAULT_INITRD_ADDR_MAX),
        cmdline_size=field(OFF_CMDLINE_SIZE, 4, 0x0206, DEFAULT_CMDLINE_SIZE),
        kernel_alignment=field(OFF_KERNEL_ALIGNMENT, 4, 0x0205),
        relocatable=bool(field(OFF_RELOCATABLE, 1, 0x0205)),
        xloadflags=field(OFF_XLOADFLAGS, 2, 0x020C),
        pref_address=field(OFF_PREF_ADDRESS, 8, 0x020A),
        init_size=field(OFF_INIT_SIZE, 4, 0x020A),
        boot_flag=_u16(data, OFF_BOOT_FLAG),
        kernel_version=kernel_version,
    )
    if not hdr.loadflags & LOADED_HIGH:
        raise LinuxBootError(
            f"{name}: a zImage (LOADED_HIGH clear in loadflags): only bzImage kernels, loaded at "
            f"0x100000, are supported")
    if hdr.setup_size > REAL_MODE_MAX:
        raise LinuxBootError(
            f"{name}: setup_sects = {hdr.setup_sects}: a real-mode part of {hdr.setup_size} bytes "
            f"exceeds the protocol's 32 KiB")
    if hdr.syssize == 0:
        raise LinuxBootError(f"{name}: syssize is 0: the header announces no protected-mode kernel")
    if len(data) < hdr.setup_size + hdr.pm_size:
        raise LinuxBootError(
            f"{name}: truncated: the header announces {hdr.setup_size} bytes of setup and "
            f"{hdr.pm_size} of protected-mode kernel ({hdr.setup_size + hdr.pm_size} bytes) "
            f"but the file has {len(data)}")
    return hdr


@dataclass
class LinuxBoot:
    """A checked kernel (+ initrd, command line) and where each part goes."""

    header: SetupHeader
    setup: bytes                # the real-mode part, loaded at REAL_MODE_BASE
    kernel: bytes               # the protected-mode part, loaded at KERNEL_ADDR
    initrd: bytes
    cmdline: bytes              # without the NUL
    memory_size: int
    initrd_addr: int = 0        # 0: no initrd
    kernel_path: str = ""
    initrd_path: str = ""
    boots: int = field(default=0)   # how often the BIOS booted it (POST and int 19h)

    # -- what the zero page says ---------------------------------------------------------

    def header_patch(self) -> list[tuple[int, str, int]]:
        """(offset from REAL_MODE_BASE, struct format, value) of every field the
        loader writes (boot.rst "Loading the rest of the kernel")."""
        hdr = self.header
        return [
            (OFF_VID_MODE, "<H", VID_MODE_NORMAL),
            (OFF_TYPE_OF_LOADER, "<B", TYPE_OF_LOADER),
            (OFF_LOADFLAGS, "<B", (hdr.loadflags | CAN_USE_HEAP) & 0xFF),
            (OFF_CODE32_START, "<I", KERNEL_ADDR),
            (OFF_RAMDISK_IMAGE, "<I", self.initrd_addr if self.initrd else 0),
            (OFF_RAMDISK_SIZE, "<I", len(self.initrd)),
            (OFF_HEAP_END_PTR, "<H", HEAP_END_PTR),
            (OFF_CMD_LINE_PTR, "<I", CMDLINE_ADDR),
        ]

    def registers(self) -> dict:
        """boot.rst "Running the kernel": CS = seg+0x20, IP = 0, the other
        segments = seg, SP = heap_end, interrupts off."""
        return {
            "cs": REAL_MODE_SEG + 0x20, "eip": 0,
            "ds": REAL_MODE_SEG, "es": REAL_MODE_SEG, "fs": REAL_MODE_SEG, "gs": REAL_MODE_SEG,
            "ss": REAL_MODE_SEG, "esp": HEAP_END,
            "eflags": 0x0002,
        }

    # -- the BIOS hook ------------------------------------------------------------------

    def load(self, mem, memory_written=None) -> None:
        """Write the images and the loader's header fields into guest RAM
        (``mem``: physical memory from 0)."""
        parts = [(REAL_MODE_BASE, self.setup), (KERNEL_ADDR, self.kernel),
                 (CMDLINE_ADDR, self.cmdline + b"\0")]
        if self.initrd:
            parts.append((self.initrd_addr, self.initrd))
        for addr, data in parts:
            mem[addr:addr + len(data)] = data
        for off, fmt, value in self.header_patch():
            struct.pack_into(fmt, mem, REAL_MODE_BASE + off, value)
        if memory_written is not None:
            for addr, data in parts:
                memory_written(addr, len(data))

    def boot(self, ctx) -> None:
        """The BIOS's direct-boot hook: load, then hand the CPU to the setup code."""
        self.load(ctx.mem, ctx.memory_written)
        r = ctx.regs
        regs = self.registers()
        r.set_gprs([0] * 10)
        r.set_segs([0] * 6)
        for name, value in regs.items():
            setattr(r, name, value)
        self.boots += 1
        ctx.log.info("linux: booting %s (protocol %s, %s) with %d bytes of initrd at %#x, command line %r",
                     self.kernel_path, self.header.version_text, self.header.kernel_version or "?",
                     len(self.initrd), self.initrd_addr, self.cmdline.decode("latin-1"))

    __call__ = boot


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LinuxBootError(f"{option} {path}: {exc.strerror}") from exc


def plan(kernel: bytes, initrd: bytes, cmdline: bytes, memory_size: int,
         kernel_name: str = "--kernel", initrd_name: str = "--initrd") -> LinuxBoot:
    """Check the parts against each other and the machine; decide the addresses."""
    hdr = parse_header(kernel, kernel_name)
    if len(cmdline) > hdr.cmdline_size:
        raise LinuxBootError(
            f"--append: the command line is {len(cmdline)} bytes; this kernel accepts at most "
            f"{hdr.cmdline_size} (cmdline_size, boot protocol {hdr.version_text})")
    if b"\0" in cmdline:
        raise LinuxBootError("--append: the command line contains a NUL byte")
    setup = kernel[:hdr.setup_size]
    pm = kernel[hdr.setup_size:]
    kernel_end = (hdr.kernel_end(len(pm)) + PAGE - 1) & ~(PAGE - 1)
    mem_mib = memory_size // MIB
    if kernel_end > memory_size:
        raise LinuxBootError(
            f"{kernel_name}: the kernel needs memory up to {_mib(kernel_end)} (loaded at 1 MiB, "
            f"runs from {_mib(max(hdr.pref_address, KERNEL_ADDR))} with init_size {_mib(hdr.init_size)}) "
            f"but the machine has {mem_mib} MiB; give --memory {-(-kernel_end // MIB)} or more")
    boot = LinuxBoot(hdr, setup, pm, initrd, cmdline, memory_size)
    if initrd:
        top = min(hdr.initrd_addr_max + 1, memory_size)
        addr = (top - len(initrd)) & ~(PAGE - 1) if len(initrd) <= top else -1
        if addr < kernel_end:
            room = max(0, (top & ~(PAGE - 1)) - kernel_end)
            need = -(-(kernel_end + len(initrd) + PAGE - 1) // MIB)
            hint = (f"give --memory {need} or more" if need * MIB <= hdr.initrd_addr_max + 1
                    else "this kernel cannot take an initrd that large")
            raise LinuxBootError(
                f"{initrd_name} is {_mib(len(initrd))}, too large: it must fit between the kernel's end "
                f"({_mib(kernel_end)}) and {_mib(top)} (the end of {mem_mib} MiB of RAM or initrd_addr_max "
                f"{hdr.initrd_addr_max:#x}), which leaves {_mib(room)}; {hint}")
        boot.initrd_addr = addr
    return boot


def prepare(kernel_path: str, initrd_path: str | None, cmdline: str | None, memory_size: int) -> LinuxBoot:
    """Read the files (never written) and plan the boot; LinuxBootError on bad input."""
    kernel = _read(kernel_path, "--kernel")
    initrd = b""
    if initrd_path is not None:
        initrd = _read(initrd_path, "--initrd")
        if not initrd:
            raise LinuxBootError(f"--initrd {initrd_path}: the file is empty")
    boot = plan(kernel, initrd, os.fsencode(cmdline or ""), memory_size,
                kernel_name=f"--kernel {kernel_path}",
                initrd_name=f"--initrd {initrd_path}")
    boot.kernel_path = kernel_path
    boot.initrd_path = initrd_path or ""
    return boot
