"""The ROM: every stub decodes as the intended real-mode code (Capstone), the
vectors POST installs point at them, and the IRQ stubs run correctly on a
real Unicorn CPU in real mode with the callout performed by the BIOS."""

import ctypes

import pytest
from capstone import CS_ARCH_X86, CS_MODE_16, Cs
from unicorn import (
    UC_ARCH_X86, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UC_MODE_16, UC_PROT_ALL, Uc,
)
from unicorn.x86_const import (
    UC_X86_INS_IN, UC_X86_INS_OUT, UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_EAX,
    UC_X86_REG_EBP, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDI, UC_X86_REG_EDX,
    UC_X86_REG_EFLAGS, UC_X86_REG_EIP, UC_X86_REG_ES, UC_X86_REG_ESI, UC_X86_REG_ESP,
    UC_X86_REG_FS, UC_X86_REG_GS, UC_X86_REG_SS,
)

from devices.i8042 import KBD_BYTE_NS
from monitor.bios import Bios, UnknownCallout
from monitor.bios import memory as bm
from monitor.bios import rom as R
from monitor.bios.post import post, the_rom
from monitor.bios.ports import inb, outb
from monitor.bios.standalone import make_machine

ROM = the_rom()
CS16 = Cs(CS_ARCH_X86, CS_MODE_16)


def decode(offset, limit=48):
    """Instructions of the stub at F000:offset as (mnemonic, op_str); a
    callout becomes ("callout", "0xNN").  Stops after iret, retf or jmp."""
    out = []
    pos = offset
    image = ROM.image
    while pos < offset + limit:
        if image[pos:pos + 2] == b"\x0f\x0b":
            out.append(("callout", hex(image[pos + 2])))
            pos += 3
            continue
        insn = next(CS16.disasm(image[pos:pos + 16], 0xF0000 + pos), None)
        assert insn is not None, f"undecodable byte at F000:{pos:04X}"
        out.append((insn.mnemonic, insn.op_str))
        pos += insn.size
        if insn.mnemonic in ("iret", "retf", "jmp", "ljmp"):
            break
    return out


def follow(offset):
    """The offset a near jmp at ``offset`` leads to (compatibility entries)."""
    if ROM.image[offset] == 0xE9:
        return (offset + 3 + int.from_bytes(ROM.image[offset + 1:offset + 3], "little", signed=True)) & 0xFFFF
    return offset


def test_image_size_date_model_and_reset_vector():
    assert len(ROM.image) == 0x10000
    assert ROM.image[0xFFF5:0xFFFD] == R.BIOS_DATE
    assert ROM.image[0xFFFE] == 0xFC
    assert decode(R.OFF_RESET) == [("ljmp", "0xf000:0xe05b")]
    assert decode(R.OFF_POST, 7) == [("cli", ""), ("cld", ""), ("callout", "0xf0"), ("hlt", ""),
                                     ("jmp", "0xfe060")]


SERVICE_STUBS = {
    0x10: 0x10, 0x13: 0x13, 0x14: 0x14, 0x15: 0x15, 0x17: 0x17, 0x1A: 0x1A, 0x05: 0x05,
}


@pytest.mark.parametrize("vector,service", sorted(SERVICE_STUBS.items()))
def test_function_stubs_are_callout_then_iret(vector, service):
    assert decode(ROM.vectors[vector]) == [("callout", hex(service)), ("iret", "")]


def test_int16_enables_interrupts_before_its_callout():
    assert decode(ROM.vectors[0x16]) == [("sti", ""), ("callout", "0x16"), ("iret", "")]


def test_int09_stub():
    assert decode(ROM.vectors[0x09]) == [
        ("push", "ax"), ("in", "al, 0x60"), ("mov", "ah, 0x4f"), ("stc", ""), ("int", "0x15"),
        ("jae", "0xfe994"), ("callout", "0x9"), ("mov", "al, 0x20"), ("out", "0x20, al"),
        ("pop", "ax"), ("iret", ""),
    ]


def test_int08_stub():
    assert decode(ROM.vectors[0x08]) == [
        ("push", "ax"), ("callout", "0x8"), ("int", "0x1c"), ("mov", "al, 0x20"),
        ("out", "0x20, al"), ("pop", "ax"), ("iret", ""),
    ]


def test_int11_int12_read_the_bda():
    for vector, field in ((0x11, "0x10"), (0x12, "0x13")):
        assert decode(ROM.vectors[vector]) == [
            ("push", "ds"), ("mov", "ax, 0x40"), ("mov", "ds, ax"),
            ("mov", f"ax, word ptr [{field}]"), ("pop", "ds"), ("iret", ""),
        ]


def test_irq_stubs():
    eoi_master = [("push", "ax"), ("mov", "al, 0x20"), ("out", "0x20, al"), ("pop", "ax"), ("iret", "")]
    for v in (0x0A, 0x0B, 0x0C, 0x0D, 0x0E):
        assert decode(ROM.vectors[v]) == eoi_master
    eoi_both = [("push", "ax"), ("mov", "al, 0x20"), ("out", "0xa0, al"), ("out", "0x20, al"),
                ("pop", "ax"), ("iret", "")]
    for v in (0x72, 0x73, 0x74, 0x76):
        assert decode(ROM.vectors[v]) == eoi_both
    rtc = decode(ROM.vectors[0x70])
    assert rtc[:4] == [("push", "ax"), ("mov", "al, 0xc"), ("out", "0x70, al"), ("in", "al, 0x71")]
    assert ("int", "0x4a") in rtc and rtc[-3:] == [("out", "0x20, al"), ("pop", "ax"), ("iret", "")]
    assert decode(ROM.vectors[0x71])[-2:] == [("int", "0xa"), ("iret", "")]
    irq7 = decode(ROM.vectors[0x0F])
    assert irq7[1:4] == [("mov", "al, 0xb"), ("out", "0x20, al"), ("in", "al, 0x20")]


def test_boot_stubs():
    assert decode(follow(ROM.vectors[0x19])) == [("callout", "0x19"), ("int", "0x18"), ("iret", "")]
    assert decode(ROM.vectors[0x18], 13) == [
        ("callout", "0x18"), ("sti", ""), ("xor", "ax, ax"), ("int", "0x16"), ("int", "0x19"),
        ("jmp", hex(0xF0000 + ROM.vectors[0x18])),
    ]


def test_every_vector_is_code_or_a_table():
    tables = {0x1D, 0x1E, 0x1F, 0x43}
    for vector, off in ROM.vectors.items():
        if vector in tables:
            continue
        ops = decode(follow(off))
        assert ops[-1][0] in ("iret", "jmp"), (hex(vector), ops)
    assert ROM.vectors[0x1E] == R.OFF_DISKETTE_TABLE
    assert ROM.image[R.OFF_DISKETTE_TABLE + 4] == 18       # 1.44M: 18 sectors per track
    assert ROM.image[R.OFF_DISKETTE_TABLE + 3] == 2        # 512-byte sectors


def test_every_callout_in_the_rom_has_a_service():
    for off, _n, text in ROM.lines:
        if text.startswith("callout"):
            assert Bios.is_callout(ROM.image[off + 2]), text
    with pytest.raises(UnknownCallout, match="0F 0B 77"):
        Bios().service(0x77, make_machine())


def test_config_table():
    t = ROM.image[R.OFF_CONFIG_TABLE:R.OFF_CONFIG_TABLE + 10]
    assert t[0] | t[1] << 8 == 8 and t[2] == 0xFC and t[5] & 0x70 == 0x70


# -- running the stubs on Unicorn ----------------------------------------------------------

GPRS = (UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX, UC_X86_REG_ESP,
        UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI, UC_X86_REG_EIP, UC_X86_REG_EFLAGS)
SEGS = (UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS, UC_X86_REG_FS, UC_X86_REG_GS)
CALLER = 0x600


class RealModeCpu:
    """Unicorn in real mode over the machine's own RAM (mem_map_ptr), with
    the monitor's two jobs done in hooks: a callout (0F 0B nn in the ROM)
    calls ``Bios.service``; ``int n`` is delivered through the IVT.

    Unicorn 2.1.4 reports #UD not through UC_HOOK_INTR but as an invalid
    instruction (UC_HOOK_INSN_INVALID, EIP at the ud2), so that is where the
    callout is recognised here."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.bios = Bios()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_16)
        self._buf = (ctypes.c_char * ctx.memory_size).from_buffer(ctx.mem.obj)
        self.uc.mem_map_ptr(0, ctx.memory_size, UC_PROT_ALL, ctypes.addressof(self._buf))
        self.uc.hook_add(UC_HOOK_INTR, self._intr)
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self._invalid)
        self.uc.hook_add(UC_HOOK_INSN, self._in, None, 1, 0, UC_X86_INS_IN)
        self.uc.hook_add(UC_HOOK_INSN, self._out, None, 1, 0, UC_X86_INS_OUT)
        self.callouts = []
        self.ints = []

    def _invalid(self, uc, _):
        cs, ip = uc.reg_read(UC_X86_REG_CS), uc.reg_read(UC_X86_REG_EIP)
        linear = (cs << 4) + ip
        mem = self.ctx.mem
        if not (0xF0000 <= linear < 0x100000 and bytes(mem[linear:linear + 2]) == b"\x0f\x0b"):
            return False                          # a genuine #UD: stop
        nn = mem[linear + 2]
        regs = self.ctx.regs
        regs.set_gprs(uc.reg_read(r) for r in GPRS)
        regs.set_segs(uc.reg_read(r) for r in SEGS)
        regs.eip = ip + 3
        self.callouts.append(nn)
        self.bios.service(nn, self.ctx)
        for r, v in zip(SEGS, regs.segs()):
            uc.reg_write(r, v)
        for r, v in zip(GPRS, regs.gprs()):
            uc.reg_write(r, v)
        return True

    def _intr(self, uc, intno, _):
        cs, ip = uc.reg_read(UC_X86_REG_CS), uc.reg_read(UC_X86_REG_EIP)
        mem = self.ctx.mem
        # int n: real-mode delivery (EIP is already past the instruction).
        self.ints.append(intno)
        sp = uc.reg_read(UC_X86_REG_ESP) & 0xFFFF
        ss = uc.reg_read(UC_X86_REG_SS)
        flags = uc.reg_read(UC_X86_REG_EFLAGS)
        for value in (flags & 0xFFFF, cs, ip):
            sp = (sp - 2) & 0xFFFF
            bm.wr16(mem, (ss << 4) + sp, value)
        uc.reg_write(UC_X86_REG_ESP, sp)
        uc.reg_write(UC_X86_REG_EFLAGS, flags & ~0x300)
        seg, off = bm.get_vector(mem, intno)
        uc.reg_write(UC_X86_REG_CS, seg)
        uc.reg_write(UC_X86_REG_EIP, off)

    def _in(self, uc, port, size, _):
        return inb(self.ctx, port)

    def _out(self, uc, port, size, value, _):
        outb(self.ctx, port, value)

    def interrupt(self, vector, **regs):
        """Run ``int vector ; hlt`` from 0000:0600 until the hlt."""
        self.ctx.mem[CALLER:CALLER + 3] = bytes((0xCD, vector, 0xF4))
        uc = self.uc
        for seg in SEGS:
            uc.reg_write(seg, 0)
        uc.reg_write(UC_X86_REG_ESP, 0x7000)
        uc.reg_write(UC_X86_REG_EFLAGS, 0x202)
        for name, value in regs.items():
            uc.reg_write(globals()[f"UC_X86_REG_{name.upper()}"], value)
        uc.emu_start(CALLER, CALLER + 2, count=500)
        assert uc.reg_read(UC_X86_REG_EIP) == CALLER + 2, "the handler did not return"


@pytest.fixture
def machine():
    ctx = make_machine()
    post(ctx)
    return ctx


def test_int09_stub_on_unicorn_puts_the_key_in_the_buffer(machine):
    ctx = machine
    cpu = RealModeCpu(ctx)
    kbd, pic = ctx.devices.kbd, ctx.devices.pic
    outb(ctx, 0x21, 0xFB & ~0x02)                 # only IRQ1 (and the cascade) open
    kbd.key_down("a")
    ctx.clock.advance_by(KBD_BYTE_NS)
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x09              # IRQ1 now in service
    cpu.interrupt(0x09, eax=0x1234)
    assert cpu.callouts == [0x15, 0x09]           # the int 15h/4Fh intercept, then the translation
    assert cpu.ints == [0x09, 0x15]
    assert cpu.uc.reg_read(UC_X86_REG_EAX) & 0xFFFF == 0x1234   # AX preserved
    assert pic.master.isr == 0                    # EOI sent
    assert not kbd.obuf_full                      # port 60h was read
    head = bm.rd16(ctx.mem, bm.BDA_KBD_HEAD)
    assert bm.rd16(ctx.mem, bm.BDA_KBD_TAIL) == head + 2
    assert bm.rd16(ctx.mem, 0x400 + head) == 0x1E61   # scan 1Eh, 'a'


def test_int15_4f_hook_can_swallow_a_key(machine):
    ctx = machine
    cpu = RealModeCpu(ctx)
    # A guest keyboard intercept at 0000:0700: clc ; retf 2 -> CF=0 consumes the key.
    ctx.mem[0x700:0x704] = b"\xf8\xca\x02\x00"
    bm.set_vector(ctx.mem, 0x15, 0, 0x700)
    outb(ctx, 0x21, 0xFB & ~0x02)
    ctx.devices.kbd.key_down("a")
    ctx.clock.advance_by(KBD_BYTE_NS)
    ctx.devices.pic.acknowledge()
    cpu.interrupt(0x09)
    assert cpu.callouts == []                     # int 09h skipped the translation
    assert bm.rd16(ctx.mem, bm.BDA_KBD_HEAD) == bm.rd16(ctx.mem, bm.BDA_KBD_TAIL)
    assert ctx.devices.pic.master.isr == 0


def test_int08_stub_on_unicorn_counts_and_calls_int1c(machine):
    ctx = machine
    cpu = RealModeCpu(ctx)
    # User tick hook: inc byte [0800h] ; iret
    ctx.mem[0x700:0x705] = b"\xfe\x06\x00\x08\xcf"
    bm.set_vector(ctx.mem, 0x1C, 0, 0x700)
    before = bm.rd32(ctx.mem, bm.BDA_TIMER_TICKS)
    ctx.clock.advance_by(60_000_000)              # > one 54.9 ms period: IRQ0 pending
    pic = ctx.devices.pic
    assert pic.acknowledge() == 0x08
    cpu.interrupt(0x08, eax=0xBEEF)
    assert bm.rd32(ctx.mem, bm.BDA_TIMER_TICKS) == before + 1
    assert ctx.mem[0x800] == 1
    assert cpu.ints == [0x08, 0x1C]
    assert pic.master.isr == 0
    assert cpu.uc.reg_read(UC_X86_REG_EAX) & 0xFFFF == 0xBEEF


def test_int11_int12_and_flag_return_on_unicorn(machine):
    ctx = machine
    cpu = RealModeCpu(ctx)
    cpu.interrupt(0x12)
    assert cpu.uc.reg_read(UC_X86_REG_EAX) & 0xFFFF == 639
    cpu.interrupt(0x11)
    assert cpu.uc.reg_read(UC_X86_REG_EAX) & 0xFFFF == bm.rd16(ctx.mem, bm.BDA_EQUIPMENT)
    # int 13h on an absent drive: CF=1 comes back through the iret frame
    # while IF (set by the caller) survives.
    cpu.interrupt(0x13, eax=0x0000, edx=0x0000)
    flags = cpu.uc.reg_read(UC_X86_REG_EFLAGS)
    assert flags & 1 and flags & 0x200
    assert (cpu.uc.reg_read(UC_X86_REG_EAX) >> 8) & 0xFF == 0x80
    # int 15h AH=88h succeeds: CF clear.
    cpu.interrupt(0x15, eax=0x8800)
    assert not cpu.uc.reg_read(UC_X86_REG_EFLAGS) & 1
    assert cpu.uc.reg_read(UC_X86_REG_EAX) & 0xFFFF == 1024


def test_spurious_irq7_gets_no_eoi(machine):
    ctx = machine
    cpu = RealModeCpu(ctx)
    pic = ctx.devices.pic
    # IRQ0 in service, then a spurious IRQ7 (nothing in ISR bit 7): the
    # stub must not EOI, or it would end IRQ0.
    ctx.clock.advance_by(60_000_000)
    assert pic.acknowledge() == 0x08
    cpu.interrupt(0x0F)
    assert pic.master.isr == 0x01
    assert not pic.master.read_isr                # OCW3 back to reading IRR


def test_power_on_to_boot_sector_on_unicorn(tmp_path):
    """From the reset vector F000:FFF0 through POST to a boot sector that
    prints with int 10h and reads its own sector 1 with int 13h."""
    from devices.disk import RawImage

    boot = bytearray(512 * 2880)
    code = bytes((
        0xB4, 0x0E,             # mov ah, 0Eh
        0xB0, 0x4F,             # mov al, 'O'
        0xCD, 0x10,             # int 10h
        0xB0, 0x4B,             # mov al, 'K'
        0xCD, 0x10,             # int 10h
        0xB8, 0x01, 0x02,       # mov ax, 0201h    ; read 1 sector
        0xB9, 0x02, 0x00,       # mov cx, 0002h    ; cylinder 0, sector 2
        0x31, 0xDB,             # xor bx, bx       ; DL is still the boot drive
        0xB6, 0x00,             # mov dh, 0
        0x8E, 0xC3,             # mov es, bx
        0xBB, 0x00, 0x80,       # mov bx, 8000h
        0xCD, 0x13,             # int 13h
        0xF4,                   # hlt
    ))
    boot[:len(code)] = code
    boot[510:512] = b"\x55\xaa"
    boot[512:1024] = b"\xa5" * 512
    (tmp_path / "a.img").write_bytes(bytes(boot))
    ctx = make_machine(floppies=[RawImage(tmp_path / "a.img")])
    cpu = RealModeCpu(ctx)
    uc = cpu.uc
    uc.reg_write(UC_X86_REG_CS, 0xF000)
    cpu.ctx.mem[0xF0000:0x100000] = ROM.image        # the monitor maps the ROM before reset
    hlt = 0x7C00 + len(code) - 1
    uc.emu_start(0xFFF0, hlt, count=2000)
    assert cpu.callouts[0] == R.SVC_POST
    assert cpu.callouts[1:] == [0x10, 0x10, 0x13]
    assert ctx.devices.vga.text_lines()[0].startswith("OK")
    assert bytes(ctx.mem[0x8000:0x8200]) == b"\xa5" * 512
    assert not uc.reg_read(UC_X86_REG_EFLAGS) & 1                 # int 13h: CF clear
    assert uc.reg_read(UC_X86_REG_EFLAGS) & 0x200                 # IF as the boot sector had it
