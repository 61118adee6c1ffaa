"""The Linux x86 boot protocol (monitor/linux/bootproto.py, docs/linux-boot.md):
the setup header parsed from the shared Debian kernel and from synthetic
headers, every refusal, the zero-page fields and images written into guest
RAM, and the real-mode entry through the BIOS's POST."""

from __future__ import annotations

import hashlib
import logging
import struct

import pytest

from monitor.bios.context import SimpleContext
from monitor.linux import LinuxBootError, parse_header, plan, prepare
from monitor.linux import bootproto as bp

LINUX_KERNEL = "linux/vmlinuz-6.1.0-50-686"
LINUX_INITRD = "linux/initramfs-busybox.cpio.gz"
MIB = 1 << 20

# The synthetic kernel's setup code, entered at 9020:0000 (file offset 0x200):
# a short jump over the header to 0x270, which writes the command line
# (DS:0xE000 = 0x9E000) to port 0xE9, then type_of_loader (DS:0x210) to the
# exit port 0xF4, and halts.
SETUP_CODE = bytes([
    0xBE, 0x00, 0xE0,        # 270 mov si, 0xE000
    0xAC,                    # 273 lodsb
    0x84, 0xC0,              # 274 test al, al
    0x74, 0x04,              # 276 jz 27C
    0xE6, 0xE9,              # 278 out 0xE9, al
    0xEB, 0xF7,              # 27A jmp 273
    0xA0, 0x10, 0x02,        # 27C mov al, [0x210]
    0xE6, 0xF4,              # 27F out 0xF4, al
    0xF4,                    # 281 hlt
    0xEB, 0xFD,              # 282 jmp 281
])
SETUP_CODE_AT = 0x270


def make_bzimage(*, version: int = 0x020F, setup_sects: int = 4, pm_size: int = 0x3000,
                 loadflags: int = bp.LOADED_HIGH, cmdline_size: int = 2047,
                 initrd_addr_max: int = 0x7FFFFFFF, pref_address: int = 0x100000,
                 init_size: int = 0x200000, syssize: int | None = None, magic: bytes = b"HdrS",
                 truncate: int = 0) -> bytes:
    """A bzImage with a real setup header, the SETUP_CODE above and a
    protected-mode part of recognisable bytes."""
    setup = bytearray(((setup_sects or 4) + 1) * 512)
    setup[bp.OFF_SETUP_SECTS] = setup_sects
    struct.pack_into("<H", setup, bp.OFF_BOOT_FLAG, 0xAA55)
    setup[bp.OFF_JUMP:bp.OFF_JUMP + 2] = bytes([0xEB, SETUP_CODE_AT - (bp.OFF_JUMP + 2)])
    setup[bp.OFF_HEADER:bp.OFF_HEADER + 4] = magic
    struct.pack_into("<H", setup, bp.OFF_VERSION, version)
    version_string = b"9.9.9-synthetic (hybrid86 tests)\0"
    struct.pack_into("<H", setup, bp.OFF_KERNEL_VERSION, 0x300 - 0x200)
    setup[0x300:0x300 + len(version_string)] = version_string
    setup[bp.OFF_LOADFLAGS] = loadflags
    struct.pack_into("<I", setup, bp.OFF_CODE32_START, 0x100000)
    struct.pack_into("<I", setup, bp.OFF_INITRD_ADDR_MAX, initrd_addr_max)
    struct.pack_into("<I", setup, bp.OFF_KERNEL_ALIGNMENT, 0x200000)
    setup[bp.OFF_RELOCATABLE] = 1
    struct.pack_into("<I", setup, bp.OFF_CMDLINE_SIZE, cmdline_size)
    struct.pack_into("<Q", setup, bp.OFF_PREF_ADDRESS, pref_address)
    struct.pack_into("<I", setup, bp.OFF_INIT_SIZE, init_size)
    pm = bytes((i * 7 + 3) & 0xFF for i in range(pm_size))
    struct.pack_into("<I", setup, bp.OFF_SYSSIZE, (pm_size + 15) // 16 if syssize is None else syssize)
    setup[SETUP_CODE_AT:SETUP_CODE_AT + len(SETUP_CODE)] = SETUP_CODE
    image = bytes(setup) + pm
    return image[:len(image) - truncate] if truncate else image


def fake_ctx(memory_mb: int) -> SimpleContext:
    return SimpleContext(memoryview(bytearray(memory_mb * MIB)), devices=None, clock=None,
                         log=logging.getLogger("test"))


def u16(mem, addr):
    return struct.unpack_from("<H", mem, addr)[0]


def u32(mem, addr):
    return struct.unpack_from("<I", mem, addr)[0]


# -- the shared Debian kernel ------------------------------------------------------------------

@pytest.mark.guests
def test_the_debian_kernel_header():
    from guests import guest_image

    with open(guest_image(LINUX_KERNEL), "rb") as f:
        data = f.read()
    hdr = parse_header(data)
    assert hdr.version >= 0x020F and hdr.version_text.startswith("2.")
    assert hdr.loadflags & bp.LOADED_HIGH
    assert hdr.code32_start == 0x100000
    assert hdr.setup_size == (hdr.setup_sects + 1) * 512 <= bp.REAL_MODE_MAX
    assert hdr.setup_size + hdr.pm_size == len(data)          # syssize describes the whole file
    assert hdr.cmdline_size == 2047 and hdr.initrd_addr_max == 0x7FFFFFFF
    assert hdr.pref_address == 0x1000000 and hdr.init_size > 0
    assert hdr.kernel_version.startswith("6.1.0-50-686 ")
    assert hdr.boot_flag == 0xAA55
    # It runs from 16 MiB with init_size bytes: it needs about 32 MiB before its memory map.
    assert 32 * MIB < hdr.kernel_end(hdr.pm_size) < 34 * MIB


@pytest.mark.guests
def test_the_debian_kernel_and_initramfs_load_into_128_mib():
    from guests import guest_image

    kernel, initrd = guest_image(LINUX_KERNEL), guest_image(LINUX_INITRD)
    before = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (kernel, initrd)]
    boot = prepare(kernel, initrd, "console=ttyS0", 128 * MIB)
    ctx = fake_ctx(128)
    boot.boot(ctx)
    mem = ctx.mem
    data = open(kernel, "rb").read()
    setup_size = boot.header.setup_size
    size = len(open(initrd, "rb").read())
    assert boot.initrd_addr % 4096 == 0 and boot.initrd_addr + size <= 128 * MIB
    assert 128 * MIB - boot.initrd_addr < size + 4096                  # as high as possible
    assert u32(mem, 0x90000 + bp.OFF_RAMDISK_IMAGE) == boot.initrd_addr
    assert u32(mem, 0x90000 + bp.OFF_RAMDISK_SIZE) == size
    assert bytes(mem[0x100000:0x100000 + len(data) - setup_size]) == data[setup_size:]
    assert bytes(mem[boot.initrd_addr:boot.initrd_addr + size]) == open(initrd, "rb").read()
    assert bytes(mem[0x9E000:0x9E00E]) == b"console=ttyS0\0"
    after = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (kernel, initrd)]
    assert before == after


@pytest.mark.guests
def test_the_debian_kernel_setup_runs_through_bt_to_the_protected_mode_entry():
    """The kernel's own real-mode setup code runs through the translator,
    calls this BIOS (int 10h, int 15h E820, ...), enters protected mode and
    jumps to code32_start: a protected-mode unit at 0x100000 appears."""
    from guests import guest_image

    from monitor.bios.system import e820_map
    from monitor.pc import PC, PCConfig

    boot = prepare(guest_image(LINUX_KERNEL), guest_image(LINUX_INITRD), "console=ttyS0", 128 * MIB)
    pc = PC(PCConfig(memory_mb=128, linux_boot=boot))
    m = pc.machine
    state = {"seen": 0, "gen": m.tc.generation, "entry": None}

    def poll():
        if m.tc.generation != state["gen"]:
            state["gen"], state["seen"] = m.tc.generation, 0
        units = m.tc.all_units
        for unit in units[state["seen"]:]:
            if unit.key[0] == "pm" and unit.key[2] == 0x100000:
                state["entry"] = unit.key
                m.stop("reached the protected-mode entry")
        state["seen"] = len(units)

    m.on_poll = poll
    try:
        reason = m.run(timeout_s=60)
    finally:
        pc.close()
    assert state["entry"] is not None, reason
    ctx = state["entry"][1]
    assert ctx.base == 0 and ctx.code32 and ctx.cpl == 0
    stats = m.statistics()
    assert stats["bt_instructions_real_mode"] > 5000           # the setup code ran, translated
    assert boot.boots == 1
    assert pc.bios.calls.get(0x15, 0) > 0 and pc.bios.calls.get(0x10, 0) > 0
    assert "Probing EDD" in pc.vga.screen_dump()                 # printed by the setup through int 10h
    # The setup code copied the header into its own boot_params (in its bss,
    # found by the second "HdrS") and filled in this BIOS's E820 map.
    low = bytes(m.memory.ram[0x90000:0xA0000])
    at = low.find(bp.HDRS, bp.OFF_HEADER + 4)
    assert at > 0, "no boot_params in the setup's memory"
    params = low[at - bp.OFF_HEADER:at - bp.OFF_HEADER + 4096]
    assert params[bp.OFF_TYPE_OF_LOADER] == 0xFF and u32(params, bp.OFF_CMD_LINE_PTR) == 0x9E000
    assert u32(params, bp.OFF_RAMDISK_IMAGE) == boot.initrd_addr
    entries = params[0x1E8]
    table = [struct.unpack_from("<QQI", params, 0x2D0 + 20 * i) for i in range(entries)]
    assert table == e820_map(128 * MIB)


# -- synthetic headers -------------------------------------------------------------------------

def test_synthetic_header_fields():
    hdr = parse_header(make_bzimage(setup_sects=6, pm_size=0x2340))
    assert hdr.setup_sects == 6 and hdr.setup_size == 7 * 512
    assert hdr.pm_size == 0x2340 and hdr.version_text == "2.15"
    assert hdr.kernel_version == "9.9.9-synthetic (hybrid86 tests)"


def test_setup_sects_zero_means_four():
    assert parse_header(make_bzimage(setup_sects=0)).setup_size == 5 * 512


def test_defaults_for_older_protocols():
    hdr = parse_header(make_bzimage(version=0x0204, cmdline_size=9999, initrd_addr_max=0x1234))
    assert hdr.cmdline_size == bp.DEFAULT_CMDLINE_SIZE == 255          # before 2.06
    assert hdr.initrd_addr_max == 0x1234                                # 2.03+
    hdr = parse_header(make_bzimage(version=0x0205, init_size=0x7000000))
    assert hdr.init_size == 0 and hdr.pref_address == 0                 # 2.10+
    assert hdr.kernel_end(0x3000) == 0x103000


@pytest.mark.parametrize("kwargs, words", [
    (dict(magic=b"NoHd"), ["not a Linux x86 kernel image", "HdrS"]),
    (dict(version=0x0203), ["2.03", "too old", "2.04"]),
    (dict(version=0x0200), ["2.00", "too old"]),
    (dict(loadflags=0), ["zImage", "LOADED_HIGH"]),
    (dict(truncate=1), ["truncated", "file has"]),
    (dict(syssize=0x10000), ["truncated"]),
    (dict(syssize=0), ["syssize is 0"]),
    (dict(setup_sects=64), ["32 KiB"]),
])
def test_header_refusals(kwargs, words):
    with pytest.raises(LinuxBootError) as exc:
        parse_header(make_bzimage(**kwargs), "--kernel k.img")
    text = str(exc.value)
    assert text.startswith("--kernel k.img: ") and "\n" not in text
    for word in words:
        assert word in text, (word, text)


def test_files_too_short_for_a_header():
    for data in (b"", b"\0" * 100, make_bzimage()[:0x204]):
        with pytest.raises(LinuxBootError, match="not a Linux x86 kernel image"):
            parse_header(data)
    with pytest.raises(LinuxBootError, match="truncated"):
        parse_header(make_bzimage()[:0x240])


def test_command_line_limit():
    plan(make_bzimage(cmdline_size=8), b"", b"12345678", 16 * MIB)
    with pytest.raises(LinuxBootError, match=r"--append: the command line is 9 bytes; .* at most 8"):
        plan(make_bzimage(cmdline_size=8), b"", b"123456789", 16 * MIB)
    with pytest.raises(LinuxBootError, match="255"):
        plan(make_bzimage(version=0x0205), b"", b"x" * 256, 16 * MIB)


def test_kernel_larger_than_memory():
    with pytest.raises(LinuxBootError, match=r"needs memory up to 32\.0 MiB .* 16 MiB; give --memory 32 or more"):
        plan(make_bzimage(pref_address=0x1000000, init_size=0x1000000), b"", b"", 16 * MIB)


def test_initrd_placement_and_limits():
    # Relocatable, 2 MiB alignment: it runs from 2 MiB and needs init_size to 3 MiB.
    kernel = make_bzimage(init_size=0x100000)
    boot = plan(kernel, b"i" * 5000, b"", 16 * MIB)
    assert boot.initrd_addr == 16 * MIB - 0x2000           # page aligned, at the top
    boot = plan(make_bzimage(initrd_addr_max=0x7FFFFF), kernel, b"", 16 * MIB)
    assert boot.initrd_addr + len(kernel) <= 0x800000 and boot.initrd_addr % 4096 == 0
    assert plan(kernel, b"i" * (13 * MIB), b"", 16 * MIB).initrd_addr == 3 * MIB   # exactly fits
    with pytest.raises(LinuxBootError, match=r"too large: .* \(3\.0 MiB\) .* leaves 13\.0 MiB; give --memory 17 or more"):
        plan(kernel, b"i" * (13 * MIB + 1), b"", 16 * MIB)
    with pytest.raises(LinuxBootError, match="initrd_addr_max 0x2fffff"):
        plan(make_bzimage(initrd_addr_max=0x2FFFFF), b"i" * (2 * MIB), b"", 16 * MIB)
    with pytest.raises(LinuxBootError, match="too large"):
        plan(kernel, b"i" * (64 * MIB), b"", 16 * MIB)


def test_zero_page_fields_and_images_in_guest_memory():
    kernel = make_bzimage(setup_sects=4, pm_size=0x5000)
    initrd = bytes(range(256)) * 40
    boot = plan(kernel, initrd, b"console=ttyS0 hybrid86.shell", 16 * MIB)
    ctx = fake_ctx(16)
    boot.boot(ctx)
    mem, z = ctx.mem, 0x90000
    setup_size = 5 * 512
    # The real-mode part at 0x90000: the file's bytes except the loader's fields.
    patched = {off for off, fmt, _ in boot.header_patch() for off in range(off, off + struct.calcsize(fmt))}
    assert all(mem[z + i] == kernel[i] for i in range(setup_size) if i not in patched)
    assert bytes(mem[0x100000:0x105000]) == kernel[setup_size:]
    assert mem[z + bp.OFF_TYPE_OF_LOADER] == 0xFF
    assert mem[z + bp.OFF_LOADFLAGS] == bp.LOADED_HIGH | bp.CAN_USE_HEAP
    assert u16(mem, z + bp.OFF_HEAP_END_PTR) == 0xE000 - 0x200
    assert u16(mem, z + bp.OFF_VID_MODE) == 0xFFFF
    assert u32(mem, z + bp.OFF_CODE32_START) == 0x100000
    assert u32(mem, z + bp.OFF_CMD_LINE_PTR) == 0x9E000
    assert bytes(mem[0x9E000:0x9E000 + 29]) == b"console=ttyS0 hybrid86.shell\0"
    assert u32(mem, z + bp.OFF_RAMDISK_IMAGE) == boot.initrd_addr == 16 * MIB - 0x3000
    assert u32(mem, z + bp.OFF_RAMDISK_SIZE) == len(initrd)
    assert bytes(mem[boot.initrd_addr:boot.initrd_addr + len(initrd)]) == initrd
    # The command line stays below the EBDA.
    assert 0x9E000 + 2048 <= 0x9FC00
    # Code-bearing writes are reported (translations of them must go).
    assert (0x90000, setup_size) in ctx.written and (0x100000, 0x5000) in ctx.written
    # boot.rst "Running the kernel".
    r = ctx.regs
    assert (r.cs, r.ip, r.ds, r.es, r.fs, r.gs, r.ss, r.sp) == (0x9020, 0, 0x9000, 0x9000, 0x9000, 0x9000, 0x9000, 0xE000)
    assert not r.eflags & 0x200 and r.eax == r.ebx == r.esi == 0


def test_no_initrd_leaves_the_ramdisk_fields_zero():
    boot = plan(make_bzimage(), b"", b"", 16 * MIB)
    ctx = fake_ctx(16)
    boot.boot(ctx)
    assert u32(ctx.mem, 0x90000 + bp.OFF_RAMDISK_IMAGE) == 0 == u32(ctx.mem, 0x90000 + bp.OFF_RAMDISK_SIZE)
    assert bytes(ctx.mem[0x9E000:0x9E001]) == b"\0"


def test_the_bios_boots_the_kernel_after_post(tmp_path):
    """In a whole PC: POST runs, then the setup code at 9020:0000 with DS =
    9000h reads the command line at DS:E000 and type_of_loader at DS:0210."""
    from monitor.pc import PC, PCConfig

    path = tmp_path / "bzImage"
    path.write_bytes(make_bzimage())
    out = bytearray()
    boot = prepare(str(path), None, "hello from the zero page", 16 * MIB)
    pc = PC(PCConfig(memory_mb=16, linux_boot=boot, debugcon_write=out.extend))
    try:
        reason = pc.run(timeout_s=30)
    finally:
        pc.close()
    assert pc.machine.exit_status == 0xFF, reason
    assert bytes(out) == b"hello from the zero page"
    assert pc.bios.calls.get(0xF0) == 1 and boot.boots == 1
    ram = pc.machine.memory.ram
    assert ram[0x413] | ram[0x414] << 8 == 639                     # POST filled the BDA
    assert bytes(ram[0x100000:0x103000]) == make_bzimage()[5 * 512:]
