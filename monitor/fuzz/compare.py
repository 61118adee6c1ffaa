"""Comparing the two final states, and printing a mismatch.

What is compared (docs/fuzzing.md has the reasons for each exclusion):

* the event that ended the run (kind, CS, IP): the terminator, a generated
  ``hlt``, the IVT stub of the vector delivered (so vector and return point),
  a mode switch, or the target of an escape;
* EAX..EDI (all 32 bits);
* EFLAGS bits CF PF AF ZF SF TF IF DF OF IOPL NT VM AC VIF VIP ID, minus the
  arithmetic flags the SDM leaves undefined at that point (the reference's
  running mask); RF is not compared (it is the monitor's resume bookkeeping);
* segment values, and the base each segment register really has;
* the guest's control-register view: CR0, CR2, CR3, CR4, GDTR, IDTR (CR0
  not when the run ended because CR0.PE was set: hybrid86 stops before the
  write, the reference after it);
* all of guest RAM (2 MiB), except undefined flag bits inside FLAGS images
  pushed while they were undefined (``pushf``, interrupt frames);
* the I/O trace (direction, port, size, value, in order);
* for an ``escape`` only the event and the I/O trace: the monitored run is
  cut inside the translator there, so its registers are not at a guest
  instruction boundary.
"""

from __future__ import annotations

from monitor.fuzz.case import ARITH_FLAGS, RF, STUB_OFF, STUB_SEG, Case, REGS32, SREGS
from monitor.fuzz.state import FinalState

EFLAGS_COMPARED = 0x003F7FD5 & ~RF


def memory_diffs(a: bytes, b: bytes, masks=()) -> list[tuple[int, int]]:
    """[(start, end)] of differing byte ranges, bits in `masks` ignored."""
    if a == b:
        return []
    ignore = {}
    for lin, size, mask in masks:
        for k in range(size):
            ignore[lin + k] = ignore.get(lin + k, 0) | ((mask >> (8 * k)) & 0xFF)
    diffs = []
    n = min(len(a), len(b))
    step = 4096
    for base in range(0, n, step):
        if a[base:base + step] == b[base:base + step]:
            continue
        start = None
        for i in range(base, min(base + step, n)):
            x = a[i] ^ b[i]
            x &= ~ignore.get(i, 0)
            if x:
                if start is None:
                    start = i
            elif start is not None:
                diffs.append((start, i))
                start = None
        if start is not None:
            diffs.append((start, min(base + step, n)))
    merged = []
    for s, e in diffs:
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def delivery(case: Case, st: FinalState):
    """(vector, frame IP, frame CS, frame FLAGS) when the run ended in an IVT stub."""
    ev = st.event
    if ev.kind != "hlt" or ev.cs != STUB_SEG or not STUB_OFF < ev.ip <= STUB_OFF + 256:
        return None
    sp = st.gprs[4] & 0xFFFF
    ss = st.segs[2]
    frame = []
    for k in range(3):
        lin = (ss << 4) + ((sp + 2 * k) & 0xFFFF)
        frame.append(st.memory[lin] | st.memory[lin + 1] << 8)
    return (ev.ip - 1 - STUB_OFF, frame[0], frame[1], frame[2])


def compare(case: Case, ref: FinalState, mon: FinalState) -> list[str]:
    """The differences a guest could observe; empty when the runs agree."""
    out = []
    if ref.event.key() != mon.event.key():
        out.append(f"event: reference {ref.event}, monitored {mon.event}")
    if ref.io != mon.io:
        out.append(f"I/O trace: reference {_io(ref.io)}, monitored {_io(mon.io)}")
    if ref.event.kind == "escape" or mon.event.kind in ("escape", "error"):
        return out
    for i, name in enumerate(REGS32):
        if ref.gprs[i] != mon.gprs[i]:
            out.append(f"{name}: reference {ref.gprs[i]:08x}, monitored {mon.gprs[i]:08x}")
    mask = EFLAGS_COMPARED & ~(ref.undefined_flags & ARITH_FLAGS)
    if (ref.eflags ^ mon.eflags) & mask:
        out.append(f"eflags: reference {ref.eflags:08x}, monitored {mon.eflags:08x} "
                   f"(differ in {(ref.eflags ^ mon.eflags) & mask:#x}; undefined {ref.undefined_flags:#x} ignored)")
    for i, name in enumerate(SREGS):
        if ref.segs[i] != mon.segs[i]:
            out.append(f"{name}: reference {ref.segs[i]:04x}, monitored {mon.segs[i]:04x}")
        elif ref.descriptors is None and ref.seg_bases[i] != mon.seg_bases[i]:
            out.append(f"{name} base: reference {ref.seg_bases[i]:#x}, monitored {mon.seg_bases[i]:#x}")
    if ref.descriptors is not None:
        out += _compare_pm(ref, mon)
    for name in ("cr0", "cr2", "cr3", "cr4", "gdtr", "idtr"):
        if name == "cr0" and ref.event.kind == "mode":
            continue          # hybrid86 stops *before* the PE-setting write (a VM stop), by design
        a, b = getattr(ref, name), getattr(mon, name)
        if a != b:
            fa = f"{a:08x}" if isinstance(a, int) else f"base {a[0]:#x} limit {a[1]:#x}"
            fb = f"{b:08x}" if isinstance(b, int) else f"base {b[0]:#x} limit {b[1]:#x}"
            out.append(f"{name}: reference {fa}, monitored {fb}")
    for s, e in memory_diffs(ref.memory, mon.memory, ref.flag_images)[:8]:
        out.append(f"memory {s:#07x}..{e:#07x}: reference {ref.memory[s:min(e, s + 16)].hex()}, "
                   f"monitored {mon.memory[s:min(e, s + 16)].hex()}")
    return out


def _compare_pm(ref: FinalState, mon: FinalState) -> list[str]:
    """Protected mode and V8086: the descriptor caches (base, limit, type/S/DPL/P
    without the accessed bit, D/B) of the usable segment registers, the base
    the real CPU really uses for each (shadow slot or shadow table entry),
    CPL, LDTR and TR."""
    out = []
    for i, name in enumerate(SREGS):
        a, b = ref.descriptors[i], mon.descriptors[i]
        if a != b:
            out.append(f"{name} descriptor: reference {_desc(a)}, monitored {_desc(b)}")
        elif a is not None and mon.seg_bases[i] is not None and mon.seg_bases[i] != a[0]:
            out.append(f"{name}: the real CPU's base is {mon.seg_bases[i]:#x}, the guest's {a[0]:#x}")
    if ref.cpl != mon.cpl:
        out.append(f"cpl: reference {ref.cpl}, monitored {mon.cpl}")
    if ref.ldtr != mon.ldtr:
        out.append(f"ldtr: reference {_sys(ref.ldtr)}, monitored {_sys(mon.ldtr)}")
    if ref.tr != mon.tr:
        out.append(f"tr: reference {_sys(ref.tr)}, monitored {_sys(mon.tr)}")
    return out


def _desc(d) -> str:
    if d is None:
        return "null"
    return f"base {d[0]:#x} limit {d[1]:#x} access {d[2]:#04x} {'32' if d[3] else '16'}-bit"


def _sys(t) -> str:
    if t[1] is None:
        return f"{t[0]:04x} (null)"
    return f"{t[0]:04x} base {t[1]:#x} limit {t[2]:#x}"


def _io(trace) -> str:
    if not trace:
        return "[]"
    s = ", ".join(f"{d} {p:#x}/{sz}={v:#x}" for d, p, sz, v in trace[:6])
    return f"[{s}{', ...' if len(trace) > 6 else ''}] ({len(trace)})"


# --------------------------------------------------------------------------- printing

def disassemble(code: bytes, ip: int, bits: int = 16) -> list[str]:
    try:
        import capstone
    except ImportError:                                       # pragma: no cover
        return [code.hex()]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16 if bits == 16 else capstone.CS_MODE_32)
    lines, off = [], 0
    while off < len(code):
        got = next(md.disasm(code[off:off + 15], ip + off), None)
        if got is None:
            lines.append(f"  {ip + off:04x}: {code[off]:02x}            (bad)")
            off += 1
            continue
        lines.append(f"  {got.address:04x}: {got.bytes.hex():<24} {got.mnemonic} {got.op_str}")
        if len(lines) > 200:
            lines.append("  ...")
            break
        off += got.size
    return lines


def describe_state(case: Case, st: FinalState) -> list[str]:
    regs = " ".join(f"{n}={v:08x}" for n, v in zip(REGS32, st.gprs))
    segs = " ".join(f"{n}={v:04x}" for n, v in zip(SREGS, st.segs))
    lines = [f"    event  {st.event}", f"    {regs}", f"    eflags={st.eflags:08x} {segs}",
             f"    cr0={st.cr0:08x} cr2={st.cr2:08x} cr3={st.cr3:08x} cr4={st.cr4:08x} "
             f"gdtr={st.gdtr[0]:#x}/{st.gdtr[1]:#x} idtr={st.idtr[0]:#x}/{st.idtr[1]:#x}"]
    if st.descriptors is not None:
        lines.append("    cpl=%s ldtr=%s tr=%s" % (st.cpl, _sys(st.ldtr), _sys(st.tr)))
        for name, d in zip(SREGS, st.descriptors):
            lines.append(f"      {name}: {_desc(d)}")
        return lines + ([f"    io {_io(st.io)}"] if st.io else [])
    d = delivery(case, st)
    if d is not None:
        lines.append(f"    delivered vector {d[0]:#04x}: frame ip={d[1]:04x} cs={d[2]:04x} flags={d[3]:04x}")
    if st.first_delivery is not None:
        v, err, cs, ip, is_int = st.first_delivery
        lines.append(f"    first event: vector {v:#04x} ({'software' if is_int else 'exception'}), "
                     f"error code {'none' if err is None else hex(err)}, at {cs:04x}:{ip:04x}")
    if st.io:
        lines.append(f"    io {_io(st.io)}")
    return lines


def format_mismatch(case: Case, ref: FinalState, mon: FinalState, diffs: list[str]) -> str:
    init = " ".join(f"{n}={case.regs.get(n, 0):08x}" for n in REGS32)
    segs = " ".join(f"{n}={case.regs.get(n, 0):04x}" for n in ("es", "ss", "ds", "fs", "gs"))
    env = case.env
    bits = env["bits"] if env else 16
    where = "real mode" if env is None else (
        f"{case.mode}, CPL {3 if env['vm'] else env['cpl']}" + (f", {env['world']}" if env.get("world") else ""))
    lines = [f"MISMATCH ({case.mode} mode): {len(diffs)} difference(s)",
             *(f"  - {d}" for d in diffs),
             f"code at {case.cs:04x}:{case.ip:04x} (linear {case.linear:#x}, {bits}-bit): {case.code.hex()}",
             *disassemble(case.code, case.ip, bits),
             f"initial: {init}", f"         eflags={case.eflags:08x} cs={case.cs:04x} {segs} mem_seed={case.mem_seed}"]
    if env is not None:
        lines.append(f"         cr0={case.cr0:08x} cr4={env['cr4']:08x} ldtr={env['ldtr']:04x} "
                     f"msr(sysenter cs,esp,eip)={[hex(x) for x in env['msr']]} iomap={env['iomap_kind']}")
    lines += [f"reference (bare Unicorn, {where}):", *describe_state(case, ref),
              "monitored (hybrid86):", *describe_state(case, mon)]
    return "\n".join(lines)
