"""The monitored path: the same case through hybrid86 (real mode: BT).

A fresh ``Machine(memory_mb=2)`` per example, A20 enabled (the reference CPU
has no A20 gate), the same RAM image, every port claimed for the shared
``PortModel``.  The run ends:

* at a ``hlt`` (the terminator, a generated ``hlt``, or an IVT stub after a
  delivery): the hlt callout halts the virtual CPU and ``on_poll`` stops the
  machine, whatever IF is;
* when execution reaches code outside the block and the stubs: the
  translator is asked for a unit there (translation is lazy: a unit is made
  when control first arrives), and the wrapped ``translate`` raises
  ``Escaped``, which ends ``Machine.run``;
* at a VM stop (CR0.PE set by ``lmsw``/``mov cr0``), or a timeout.

The final state is read from the real CPU (general registers, EFLAGS), the
monitor's virtual state (segment values, CR0/2/3/4, GDTR, IDTR) and the
shadow descriptors behind the real segment registers (the base each segment
register really has: a translation that leaves a borrowed FS behind shows up
there).  The guest IP comes from where the run stopped (``halted_ip`` for a
``hlt``, the callout's guest IP for a VM stop).
"""

from __future__ import annotations

from monitor.realmode import VMStop


from bt import abi
from monitor.fuzz.case import RAM_SIZE, Case
from monitor.fuzz.ports import PortModel
from monitor.fuzz.state import Event, FinalState

REAL_TIMEOUT_S = 5.0


class Escaped(Exception):
    def __init__(self, cs: int, ip: int):
        super().__init__(f"control left the block: {cs:04x}:{ip:04x}")
        self.cs, self.ip = cs, ip


def _descriptor_base(machine, selector: int) -> int | None:
    off = machine.abi.offset(machine.abi.GDT_LINEAR) + (selector & ~7)
    if (selector & ~7) >= abi.GDT_ENTRIES * 8:
        return None
    d = machine.memory.monitor[off:off + 8]
    return d[2] | d[3] << 8 | d[4] << 16 | d[7] << 24


def run_monitored(case: Case, native: bool = True, timeout_s: float = REAL_TIMEOUT_S,
                  machine_hook=None) -> FinalState:
    from monitor.machine import Machine
    from monitor.realmode import EFLAGS

    m = Machine(memory_mb=RAM_SIZE >> 20, native=native)
    m.mmu.set_a20(True)
    m.memory.ram[:] = case.memory_image()
    ports = PortModel()
    m.cpu.set_io_handlers(ports.read, ports.write)
    m.cpu.claim_ports(0, 0x10000, "python")
    m.vcpu.cr0 = case.cr0
    translate = m.translator.translate

    def guarded(cs, ip, base=None):
        lin = ((cs << 4) if base is None else base) + (ip & 0xFFFF)
        if not (case.in_block(lin) or case.in_stubs(lin)) and not m.vcpu.halted:
            raise Escaped(cs, ip)
        return translate(cs, ip, base)

    m.translator.translate = guarded
    enter_cr0 = m.write_cr0

    def write_cr0(value):
        # A real-mode case ends where the guest enters protected mode (both paths).
        if value & 1 and not m.vcpu.cr0 & 1:
            raise VMStop("the guest entered protected mode: the real-mode case ends here")
        enter_cr0(value)

    m.write_cr0 = write_cr0
    m.on_poll = lambda: m.stop("halted") if m.vcpu.halted else None
    if machine_hook is not None:
        machine_hook(m)
    regs = {k: v for k, v in case.regs.items()}
    notes = []
    try:
        m.enter_real_mode(case.cs, case.ip, regs)
        g = m.cpu.read_gprs()
        g[EFLAGS] = case.eflags | 0x2
        m.cpu.write_gprs(g)
        reason = m.run(timeout_s=timeout_s)
    except Escaped as esc:
        event = Event("escape", esc.cs, esc.ip)
        reason = None
    except Exception as exc:                      # a monitor failure is a finding, not a crash
        event = Event("error", 0, 0, f"{type(exc).__name__}: {exc}")
        reason = None
    else:
        if m.vcpu.halted:
            event = Event("hlt", m.seg_value(1), m.halted_ip & 0xFFFF)
        elif reason and "protected mode" in reason:
            ip = m.guest_ip_at(m.cpu.read_gprs()[8])
            event = Event("mode", m.seg_value(1), ip if ip is not None else 0, "CR0.PE set")
        else:
            event = Event("error", m.seg_value(1), 0, f"stop: {reason}")
    return _final(m, ports, event, notes)


def _final(m, ports: PortModel, event: Event, notes) -> FinalState:
    g = m.cpu.read_gprs()
    segs = [m.seg_value(i) for i in range(6)]
    real = m.cpu.read_segs()
    bases = []
    for i in range(6):
        if i == 1:
            bases.append(m.mirror.read_base(1))
        else:
            b = _descriptor_base(m, real[i])
            bases.append(b if b is not None else -1)
    v = m.vcpu
    return FinalState(
        gprs=list(g[:8]), eflags=g[9], segs=segs, seg_bases=bases,
        cr0=v.cr0 & 0xFFFFFFFF, cr2=v.cr2, cr3=v.cr3, cr4=v.cr4,
        gdtr=tuple(v.gdtr), idtr=tuple(v.idtr),
        memory=bytes(m.memory.ram), io=list(ports.trace), event=event, notes=notes)
