"""A PC: the machine with its chipset devices, disks and BIOS.

    pc = PC(PCConfig(fda="freedos.img"))
    pc.run(timeout_s=10)

Everything the guest executes - the BIOS's reset vector and POST, the boot
sector, DOS - runs through the binary translator; the BIOS's work is done by
Python services behind the ROM's callouts (monitor/bios).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Optional

from devices.cmos_rtc import CmosRtc
from devices.debugcon import DebugCon
from devices.disk import RawImage
from devices.exit_port import ExitPort
from devices.i8042 import I8042
from devices.pic8259 import Pic8259Pair
from devices.pit8254 import Pit8254
from devices.port61 import SystemControlPortB
from devices.port92 import A20Gate, Port92
from devices.uart16550 import Uart16550
from devices.vga_text import VgaText
from monitor.bios import Bios
from monitor.bios.context import SimpleDevices
from monitor.machine import Machine
from monitor.realmode import EFLAGS, VMStop
from monitor.bios.rom import SVC_KEYBOARD_FN, SVC_TIMER
from monitor.regs import FLAG_IF, FLAG_ZF, RegisterFile
from monitor.vcpu import CS

log = logging.getLogger("hybrid86.monitor.pc")

RESET_CS, RESET_IP = 0xF000, 0xFFF0
# Idle detection: IDLE_POLLS int 16h "is there a key?" polls in a row that find
# none (with IF=1, no other BIOS work in between but timer ticks) mean the guest
# waits for the keyboard in a spin loop; from then on each empty poll halts it
# until the next interrupt instead of burning a host core.  Bounded polling loops
# shorter than that run at full speed (FreeDOS polls ~2,000 times while booting).
# The price: a program that polls more often than that with no other BIOS call
# between (a game loop writing video memory directly) runs one poll per tick.
IDLE_POLLS = 4096
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")


@dataclass
class PCConfig:
    memory_mb: int = 16
    fda: Optional[str] = None          # floppy image for drive A:
    hda: Optional[str] = None          # hard disk image for drive C: (80h)
    boot: str = "a"                    # "a" or "c" (then the other one)
    writable: bool = False             # write guest disk writes through to the image files
    serial_write: Optional[Callable[[bytes], None]] = None
    debugcon_write: Optional[Callable[[bytes], None]] = None
    native: bool = True
    rtc_start: Optional[datetime] = None
    # A kernel the BIOS boots instead of a drive (monitor/linux: LinuxBoot),
    # after POST and on int 19h: called with the BIOS context, it loads guest
    # RAM and sets the registers (docs/linux-boot.md).
    linux_boot: Optional[Callable] = None


class BiosContextAdapter:
    """The BiosContext the services see, backed by the machine (monitor/bios/context.py)."""

    def __init__(self, pc: "PC"):
        self.pc = pc
        self.mem = pc.machine.memory.ram
        self.memory_size = pc.machine.memory.ram_size
        self.devices = pc.bios_devices
        self.clock = pc.machine.clock
        self.log = logging.getLogger("hybrid86.bios")
        self.boot_order = pc.boot_order
        self.direct_boot = pc.config.linux_boot     # replaces the drive boot when set (bios/post.py)
        self.regs = RegisterFile()
        self.key_wait = False

    @property
    def a20(self) -> bool:
        return self.pc.machine.mmu.a20

    @a20.setter
    def a20(self, value: bool) -> None:
        self.pc.a20_gate.source("bios")(bool(value))

    def wait_for_key(self) -> None:
        self.key_wait = True

    def memory_written(self, addr: int, length: int) -> None:
        self.pc.machine.note_memory_written(addr, length)


class PC:
    def __init__(self, config: PCConfig):
        self.config = config
        self.machine = m = Machine(memory_mb=config.memory_mb, native=config.native)
        clock = m.clock
        self.pic = m.attach(Pic8259Pair(on_intr=self._on_intr))
        m.pic = self.pic
        self.pit = m.attach(Pit8254(clock, self.pic.irq_line(0)))
        self.port61 = m.attach(SystemControlPortB(self.pit))
        self.rtc = m.attach(CmosRtc(clock, self.pic.irq_line(8), start_time=config.rtc_start))
        # The PC resets with A20 masked; the 8042, port 92h and the BIOS drive it.
        self.a20_gate = A20Gate(m.mmu.set_a20, initial=False)
        m.mmu.set_a20(False)
        self.kbc = m.attach(I8042(clock, self.pic.irq_line(1), on_a20=self.a20_gate.source("kbc"),
                                  on_reset=lambda: m.stop("the guest reset the machine (8042 pulse)")))
        self.port92 = m.attach(Port92(on_a20=self.a20_gate.source("port92"),
                                      on_reset=lambda: m.stop("the guest reset the machine (port 92h)")))
        self.uart = m.attach(Uart16550(clock, self.pic.irq_line(4), write=config.serial_write))
        self.vga = m.attach(VgaText(m.memory.ram[0xB8000:0xC0000]))
        m.attach(DebugCon(write=config.debugcon_write))
        m.attach(ExitPort(on_exit=lambda v: m.stop(f"the guest wrote {v} to the exit port", v)))
        self.floppies = [RawImage(config.fda, writable=config.writable, media="floppy") if config.fda else None]
        self.disks = [RawImage(config.hda, writable=config.writable, media="hdd") if config.hda else None]
        self.boot_order = {"a": "ac", "c": "ca"}[config.boot]
        self.bios_devices = SimpleDevices(vga=self.vga, kbd=self.kbc, pic=self.pic, pit=self.pit, cmos=self.rtc,
                                          floppies=self.floppies, disks=self.disks, uarts=[self.uart])
        self.bios = Bios()
        self.ctx = BiosContextAdapter(self)
        m.bios = self
        self.key_waits = 0          # int 16h waits for a key (the guest idled in the BIOS)
        self.empty_polls = 0        # consecutive int 16h AH=01h/11h polls that found no key
        self.idle_halts = 0         # times idle detection halted the guest
        m.memory.write(0xF0000, self.bios.rom.image)
        m.enter_real_mode(RESET_CS, RESET_IP)

    # -- interrupts ---------------------------------------------------------------

    def _on_intr(self, level: bool) -> None:
        """The PIC's INTR output rose: leave the CPU so the run loop can deliver."""
        if level and self.machine.guest_if():
            self.machine.uc.emu_stop()

    # -- the BIOS bridge (called by Machine for a BIOS callout) ----------------------

    def callout(self, machine: Machine, rec, regs):
        """Run BIOS service rec.service on the guest state; return the IP to continue at."""
        r = self.ctx.regs
        r.set_gprs(regs)
        r.eflags = regs[EFLAGS]
        r.eip = rec.next_ip
        for i, name in enumerate(SEG_NAMES):
            setattr(r, name, machine.seg_value(i))
        self.ctx.key_wait = False
        poll = rec.service == SVC_KEYBOARD_FN and (regs[0] >> 8) & 0xFF in (0x01, 0x11)
        try:
            self.bios.service(rec.service, self.ctx)
        except Exception as exc:  # a BIOS/host failure: a clean, explained stop
            raise VMStop(f"BIOS service {rec.service:#04x} failed: {exc}") from exc
        gprs = r.gprs()
        regs[:8] = gprs[:8]
        regs[EFLAGS] = (gprs[9] & ~0x100) | 0x2     # TF is not passed through (single-step unsupported)
        for i, name in enumerate(SEG_NAMES):
            value = getattr(r, name) & 0xFFFF
            if i != CS and value != machine.seg_value(i):
                machine.load_seg(i, value)
        new_cs, new_ip = r.cs & 0xFFFF, r.ip & 0xFFFF
        if self.ctx.key_wait and (new_cs, new_ip) == (rec.cs, rec.ip):
            self.key_waits += 1
            machine.vcpu.halted = True          # idle until an interrupt, then re-execute
            return rec.ip
        if poll and r.eflags & FLAG_ZF and r.eflags & FLAG_IF:
            self.empty_polls += 1
        elif rec.service != SVC_TIMER:          # the timer's own callout does not end a streak
            self.empty_polls = 0
        if (new_cs, new_ip) == (rec.cs, rec.next_ip):
            if poll and self.empty_polls >= IDLE_POLLS:
                self.idle_halts += 1
                machine.vcpu.halted = True      # idle until the next interrupt, then go on
                return rec.next_ip
            return None                         # continue inline after the callout
        if new_cs != machine.seg_value(CS):
            machine.load_seg(CS, new_cs)
        return new_ip

    # -- running ------------------------------------------------------------------

    def run(self, timeout_s: float | None = None) -> str:
        return self.machine.run(timeout_s=timeout_s)

    def close(self) -> None:
        for d in self.floppies + self.disks:
            if d is not None:
                d.close()
