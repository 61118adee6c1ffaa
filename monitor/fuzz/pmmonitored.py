"""The monitored path for protected mode and V8086: the same case through
hybrid86, in the world its decision rule picks (BT for ring 0 and for ring 3
at IOPL 3 or with IF=0, DE for ring 3 otherwise and for V8086).

The machine is put in the state a guest kernel would have set up, with the
Machine's own set-up methods (nothing in monitor/ is changed for the
fuzzer): GDTR/IDTR/LDTR/TR and the SYSENTER MSRs in the virtual CPU,
``write_cr0`` (PE: protected mode), ``set_segment`` for the six segment
registers with the descriptors of the guest's table (``v86_segment`` in
V8086), ``set_real_tr``, the guest's EFLAGS through ``set_guest_eflags``,
and ``guest_target`` for the first instruction, which is where the decision
rule runs (a DE entry or a translation).

The run stops at the first event, as the reference does (U2: Unicorn never
delivers through the IDT, so the reference can only say *which* event):

* ``ProtectedModeOps.deliver`` is wrapped on the instance: the first
  delivery that the monitor completes records (vector, error code, return
  EIP, software or not) and a snapshot of the guest state taken just before
  it, and stops the machine.  A delivery that itself faults (``int n``
  through a DPL-0 gate from ring 3) is not the event; the #GP that the
  machine then delivers is, as on hardware;
* ``sysenter``/``sysexit`` are wrapped the same way (event with the state
  before the transfer; #GP(0) when the MSR is null is a fault as above);
* ``hlt`` at ring 0 halts the virtual CPU and ``on_poll`` stops the run;
* control outside the block: in BT the protected-mode translator is asked
  for a unit there (the wrapped ``translate`` raises ``Escaped``); in DE a
  block hook over guest addresses outside the block stops the run.

All 65536 ports answer from the shared ``PortModel``: the CPU adapter's I/O
handlers (IDENT I/O at ring 0 and direct I/O in DE, after the monitor's
permission check ``_de_io_check``) and ``Machine.bus`` (the I/O callouts of
BT at CPL > 0) both point there.
"""

from __future__ import annotations

from unicorn import UC_HOOK_BLOCK

from monitor.fuzz import pmenv as E
from monitor.fuzz.case import RAM_SIZE, Case
from monitor.fuzz.monitored import Escaped
from monitor.fuzz.ports import PortModel
from monitor.fuzz.state import Event, FinalState

TIMEOUT_S = 5.0


class _Bus:
    def __init__(self, ports: PortModel):
        self.read, self.write = ports.read, ports.write


def _view(desc):
    if desc is None:
        return None
    return (desc.base & 0xFFFFFFFF, desc.limit & 0xFFFFFFFF, desc.access & 0xFE, 1 if desc.big else 0)


def _real_bases(m) -> list:
    """The base each real segment register has: the shadow descriptor behind
    its selector (BT slots and DE selectors), value*16 in V8086 DE."""
    from monitor.modes import World
    segs = m.cpu.read_segs()
    out = []
    v86 = m.world is World.DE and m.vcpu.eflags_vm
    for i, sel in enumerate(segs):
        if v86:
            out.append((sel & 0xFFFF) << 4)
            continue
        if i == 1 and m.world is World.BT:
            out.append(m.mirror.read_base(1))
            continue
        if sel & 0xFFFC == 0:
            out.append(None)
            continue
        table = m.abi.LDT_LINEAR if sel & 4 else m.abi.GDT_LINEAR
        off = m.abi.offset(table) + (sel & 0xFFF8)
        d = m.memory.monitor[off:off + 8]
        out.append(d[2] | d[3] << 8 | d[4] << 16 | d[7] << 24)
    return out


def snapshot(m, regs, ports: PortModel, event: Event) -> FinalState:
    v = m.vcpu
    bases = _real_bases(m)
    descs = [_view(v.segs[s][1]) for s in range(6)]
    return FinalState(
        gprs=[x & 0xFFFFFFFF for x in regs[:8]], eflags=m.guest_eflags(regs) & 0xFFFFFFFF,
        segs=[v.segs[s][0] & 0xFFFF for s in range(6)],
        seg_bases=[b if d is not None else None for b, d in zip(bases, descs)],
        cr0=v.cr0 & 0xFFFFFFFF, cr2=v.cr2 & 0xFFFFFFFF, cr3=v.cr3 & 0xFFFFFFFF, cr4=v.cr4 & 0xFFFFFFFF,
        gdtr=tuple(v.gdtr), idtr=tuple(v.idtr), memory=bytes(m.memory.ram), io=list(ports.trace),
        event=event, descriptors=descs, cpl=3 if v.eflags_vm else v.cpl,
        ldtr=(v.ldtr[0] & 0xFFFF, v.ldtr[1], v.ldtr[2]) if v.ldtr[0] & 0xFFFC else (v.ldtr[0] & 0xFFFF, None, None),
        tr=(v.tr[0] & 0xFFFF, v.tr[1], v.tr[2]))


def setup_machine(case: Case, native: bool = True):
    """A Machine in the case's initial state; returns (machine, ports, first EIP)."""
    from monitor import descriptors as D
    from monitor.machine import Machine
    from monitor.protmode import v86_segment

    env = case.env
    m = Machine(memory_mb=RAM_SIZE >> 20, native=native)
    m.mmu.set_a20(True)                                 # a protected-mode guest has enabled A20
    m.memory.ram[:] = case.memory_image()
    ports = PortModel()
    m.cpu.set_io_handlers(ports.read, ports.write)
    m.cpu.claim_ports(0, 0x10000, "python")
    m.bus = _Bus(ports)
    v = m.vcpu
    gdt_len = len(env["gdt"]) // 2
    v.gdtr = (E.SYS_GDT, gdt_len - 1)
    v.idtr = (E.SYS_IDT, 0x7FF)
    m.write_cr0(case.cr0)                               # PE 0 -> 1: protected mode
    v.cr4 = env["cr4"]
    m.paging_changed()
    v.ldtr = (env["ldtr"], E.SYS_LDT, E.LDT_ENTRIES * 8 - 1) if env["ldtr"] else (0, 0, 0)
    v.tr = (E.SEL_TSS, E.SYS_TSS, E.TSS_LIMIT, D.SYS_TSS32_BUSY)
    m.set_real_tr(E.SEL_TSS, E.SYS_TSS, E.TSS_LIMIT, D.SYS_TSS32_BUSY)
    v.msr.update(zip((E.MSR_SYSENTER_CS, E.MSR_SYSENTER_ESP, E.MSR_SYSENTER_EIP), env["msr"]))
    vm = bool(env["vm"])
    v.eflags_vm = vm
    v.cpl = 3 if vm else env["cpl"]
    for sreg, sel in enumerate(env["segs"]):
        if vm:
            m.set_segment(sreg, sel, v86_segment(sel))
        elif sel & 0xFFFC == 0:
            m.set_segment(sreg, sel, None)
        else:
            m.set_segment(sreg, sel, m.pm_ops.descriptor(sel))
    regs = m.cpu.read_gprs()
    for i, name in enumerate(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")):
        regs[i] = case.regs.get(name, 0) & 0xFFFFFFFF
    m.set_guest_eflags(regs, case.eflags | 0x2 | (0x20000 if vm else 0))
    return m, ports, regs


def run_pm_monitored(case: Case, native: bool = True, timeout_s: float = TIMEOUT_S,
                     machine_hook=None) -> FinalState:
    from monitor.modes import World
    from monitor.realmode import EIP

    m, ports, regs = setup_machine(case, native)
    v = m.vcpu
    got: dict = {}
    ops = m.pm_ops

    def record(regs_now, event: Event) -> None:
        got["state"] = snapshot(m, regs_now, ports, event)
        m.stop("fuzz: first event")

    orig_deliver = ops.deliver

    def deliver(regs_now, vector, return_eip, error_code=None, soft=False):
        if "state" in got:
            return orig_deliver(regs_now, vector, return_eip, error_code, soft)
        before = snapshot(m, regs_now, ports, Event("event", v.segs[1][0] & 0xFFFF, return_eip & 0xFFFFFFFF,
                                                    vector=vector, error=error_code, soft=soft))
        target = orig_deliver(regs_now, vector, return_eip, error_code, soft)   # may raise: not the event
        got["state"] = before
        m.stop("fuzz: first event")
        return target

    ops.deliver = deliver
    current = {}
    orig_handle = ops.handle

    def handle(rec, regs_now):
        current["rec"] = rec
        return orig_handle(rec, regs_now)

    ops.handle = handle
    de_event = m._de_event

    def de_event_seen(regs_now, pending, *rest):
        current["pending"] = pending
        try:
            return de_event(regs_now, pending, *rest)
        finally:
            current["pending"] = None

    m._de_event = de_event_seen

    def after_sys(regs_now) -> int:
        if m.world is World.BT and current.get("rec") is not None:
            return current["rec"].next_ip & 0xFFFFFFFF
        eip = regs_now[EIP]
        pending = current.get("pending")
        if pending is not None and pending[0] == "sysenter":
            return eip & 0xFFFFFFFF                     # (the unwound sysenter: EIP is past it already)
        try:
            at = m.vmem.read((v.segs[1][1].base + eip) & 0xFFFFFFFF, 2, cpl=0)
        except Exception:
            at = b""
        return (eip + 2) & 0xFFFFFFFF if at in (b"\x0f\x34", b"\x0f\x35") else eip

    for name, check in (("sysenter", lambda: v.msr.get(E.MSR_SYSENTER_CS, 0) & 0xFFFC),
                        ("sysexit", lambda: v.msr.get(E.MSR_SYSENTER_CS, 0) & 0xFFFC and v.cpl == 0)):
        orig = getattr(ops, name)

        def wrapped(regs_now, orig=orig, name=name, check=check):
            if "state" not in got and check():
                record(regs_now, Event(name, v.segs[1][0] & 0xFFFF, after_sys(regs_now)))
            return orig(regs_now)
        setattr(ops, name, wrapped)

    translate = m.pm_translator.translate

    def guarded(ctx, eip, phys_pages=None):
        lin = (ctx.base + eip) & 0xFFFFFFFF
        if not (case.in_block(lin) or case.in_stubs(lin)) and not v.halted and "state" not in got \
                and m.stop_reason is None:
            raise Escaped(ctx.selector, eip)
        return translate(ctx, eip, phys_pages)

    m.pm_translator.translate = guarded
    escape = {}

    def on_block(uc, address, size, _):
        if m.world is World.DE and "state" not in got and not escape:
            base = _real_bases(m)[1]                  # (the virtual CS is stale while DE runs)
            escape["event"] = Event("escape", m.cpu.read_segs()[1], (address - (base or 0)) & 0xFFFFFFFF)
            m.stop("fuzz: control left the block")

    lo, hi = case.linear, case.linear + len(case.code)
    from monitor.memory import TC_LINEAR
    m.uc.hook_add(UC_HOOK_BLOCK, on_block, None, 0, lo - 1)
    m.uc.hook_add(UC_HOOK_BLOCK, on_block, None, hi, TC_LINEAR - 1)
    m.on_poll = lambda: m.stop("halted") if v.halted else None
    if machine_hook is not None:
        machine_hook(m)
    try:
        regs[EIP] = m.eip = m.guest_target(regs, case.ip)
        m.cpu.write_gprs(regs)
        reason = m.run(timeout_s=timeout_s)
    except Escaped as esc:
        return _final(m, ports, Event("escape", esc.cs, esc.ip))
    except Exception as exc:                      # a monitor failure is a finding, not a crash
        return _final(m, ports, Event("error", 0, 0, f"{type(exc).__name__}: {exc}"))
    if "state" in got:
        return got["state"]
    if escape:
        return _final(m, ports, escape["event"])
    if v.halted:
        return _final(m, ports, Event("hlt", v.segs[1][0] & 0xFFFF, m.halted_ip & 0xFFFFFFFF))
    return _final(m, ports, Event("error", v.segs[1][0] & 0xFFFF, 0, f"stop: {reason}"))


def _final(m, ports, event: Event) -> FinalState:
    regs = m.cpu.read_gprs()
    return snapshot(m, regs, ports, event)
