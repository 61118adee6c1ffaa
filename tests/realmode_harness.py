"""Run small real-mode programs two ways: through hybrid86 (BT) and on bare
Unicorn in real mode (the reference), with the same I/O devices."""

from __future__ import annotations

from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INSN, UC_MODE_16, Uc
from unicorn import x86_const as X

from devices.debugcon import DebugCon
from devices.exit_port import ExitPort
from monitor.machine import Machine
from x86env import assemble

ORG = 0x7C00
GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


def run_bt(src: str, timeout_s: float = 5.0, native: bool = True, watch_guest_fetch: bool = True):
    """(machine, output bytes, exit status, guest fetches) of `src` run by hybrid86."""
    m = Machine(memory_mb=2, native=native)
    out = bytearray()
    m.attach(DebugCon(write=lambda b: out.extend(b)))
    m.attach(ExitPort(on_exit=lambda v: m.stop(f"guest exit {v}", v)))
    m.memory.write(ORG, assemble(src, bits=16, org=ORG))
    guest_fetches: list[int] = []
    if watch_guest_fetch:
        # Any instruction fetched from guest RAM (below the TC) is a translator bug.
        m.uc.hook_add(UC_HOOK_CODE, lambda uc, addr, size, _: guest_fetches.append(addr), None, 0, m.memory.ram_size - 1)
    m.enter_real_mode(0, ORG)
    m.run(timeout_s=timeout_s)
    return m, bytes(out), m.exit_status, guest_fetches


def run_reference(src: str, max_insns: int = 1_000_000):
    """The same program on bare Unicorn in real mode: (output, exit status, registers)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_16)
    uc.mem_map(0, 0x110000)
    code = assemble(src, bits=16, org=ORG)
    uc.mem_write(ORG, code)
    out = bytearray()
    status = []

    def on_out(uc_, port, size, value, _):
        if port == 0xE9:
            out.append(value & 0xFF)
        elif port == 0xF4:
            status.append(value)
            uc_.emu_stop()

    def on_in(uc_, port, size, _):
        return 0xE9 if port == 0xE9 else 0xFF

    from unicorn import UC_HOOK_INTR

    def on_intr(uc_, intno, _):
        # Real-mode IVT delivery, done here as the hardware would.
        sp = (uc_.reg_read(X.UC_X86_REG_SP) - 6) & 0xFFFF
        ss = uc_.reg_read(X.UC_X86_REG_SS)
        flags = uc_.reg_read(X.UC_X86_REG_EFLAGS) & 0xFFFF
        cs = uc_.reg_read(X.UC_X86_REG_CS)
        ip = uc_.reg_read(X.UC_X86_REG_IP)
        uc_.mem_write(ss * 16 + sp, ip.to_bytes(2, "little") + cs.to_bytes(2, "little") + flags.to_bytes(2, "little"))
        uc_.reg_write(X.UC_X86_REG_SP, sp)
        uc_.reg_write(X.UC_X86_REG_EFLAGS, flags & ~0x300)
        vec = bytes(uc_.mem_read(intno * 4, 4))
        uc_.reg_write(X.UC_X86_REG_CS, int.from_bytes(vec[2:], "little"))
        uc_.reg_write(X.UC_X86_REG_IP, int.from_bytes(vec[:2], "little"))

    uc.hook_add(UC_HOOK_INSN, on_out, None, 1, 0, X.UC_X86_INS_OUT)
    uc.hook_add(UC_HOOK_INSN, on_in, None, 1, 0, X.UC_X86_INS_IN)
    uc.hook_add(UC_HOOK_INTR, on_intr)
    uc.emu_start(ORG, 0x10FFFF, count=max_insns)
    regs = {name: uc.reg_read(getattr(X, f"UC_X86_REG_{name.upper()}")) for name in GPR_NAMES}
    return bytes(out), (status[0] if status else None), regs


def bt_registers(machine) -> dict:
    values = machine.cpu.read_gprs()
    return dict(zip(GPR_NAMES, values[:8]))
