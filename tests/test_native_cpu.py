"""The CPU adapter: every behaviour tested once, against the native extension
and against its pure-Python twin, and the two held equal on the same program."""

from __future__ import annotations

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

import _native
from _native.layout import CalibrationError, ContextLayout, _one
from x86env import CODE, SCRATCH, World, assemble

IMPLS = pytest.mark.parametrize("impl", [_native.Cpu, _native.PyCpu], ids=["native", "python"])


def flat_engine(code: bytes, at: int = 0x1000) -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    uc.mem_write(at, code)
    return uc


@IMPLS
def test_gpr_batch_round_trip(impl):
    uc = flat_engine(b"\x90")
    cpu = impl(uc)
    values = [0x11111111 * i for i in range(1, 9)] + [0x1234, 0x202]
    cpu.write_gprs(values)
    assert cpu.read_gprs() == values
    with pytest.raises(ValueError):
        cpu.write_gprs([1, 2, 3])


@IMPLS
def test_segments_and_control_registers(impl):
    w = World()
    cpu = impl(w.uc)
    es, cs, ss, ds, fs, gs = cpu.read_segs()
    assert (cs, ss, ds, es) == (0x08, 0x10, 0x10, 0x10)
    cr0, cr2, cr3, cr4 = cpu.read_crs()
    assert cr0 & 1 and cr3 == 0


@IMPLS
def test_softint_event_and_eip_past_the_int(impl):
    uc = flat_engine(assemble("mov eax, 7\nint 0x21\nnop"))
    cpu = impl(uc)
    cpu.install_hooks()
    ev = cpu.run(0x1000, 0x1000 + 8)
    assert ev == ("softint", 0x21, 0, True, 0x1007)
    assert cpu.counters["softints"] == 1


@IMPLS
def test_exception_event_carries_the_error_code(impl):
    w = World()
    cpu = impl(w.uc)
    cpu.install_hooks()
    import struct

    w.uc.mem_write(SCRATCH, struct.pack("<H", 0x0ABB))
    code = assemble(f"nop\nmov ds, [{SCRATCH}]")
    ev = cpu.run(w.load(code), CODE + len(code))
    assert ev == ("exception", 13, 0x0AB8, False, CODE + 1)     # RPL bits cleared


@IMPLS
def test_vector_handler_can_continue_or_stop(impl):
    uc = flat_engine(assemble("int 0x30\ninc ebx\nint 0x31\ninc ebx\nnop"))
    cpu = impl(uc)
    cpu.install_hooks()
    calls = []
    cpu.set_vector_handler(0x30, lambda v, e, i: calls.append(v) or True)   # continue
    cpu.set_vector_handler(0x31, lambda v, e, i: calls.append(v) or False)  # stop
    ev = cpu.run(0x1000, 0x1000 + 8)
    assert calls == [0x30, 0x31] and ev.kind == "handler-stop" and ev.vector == 0x31
    assert cpu.read_gprs()[3] == 1                     # one inc ebx ran between them
    cpu.set_vector_handler(0x31, None)                 # back to the default
    ev = cpu.run(0x1000, 0x1000 + 8)
    assert ev.kind == "softint" and ev.vector == 0x31
    with pytest.raises(ValueError):
        cpu.set_vector_handler(256, None)


@IMPLS
def test_handler_exceptions_reach_run(impl):
    uc = flat_engine(assemble("int 0x30\nnop"))
    cpu = impl(uc)
    cpu.install_hooks()

    def boom(v, e, i):
        raise KeyError("from the handler")

    cpu.set_vector_handler(0x30, boom)
    with pytest.raises(KeyError, match="from the handler"):
        cpu.run(0x1000, 0x1003)
    assert cpu.last_event.kind == "handler-error"


@IMPLS
def test_port_actions_float_ignore_and_python(impl):
    code = assemble("mov dx, 0x3f8\nmov al, 0x41\nout dx, al\nin al, dx\nmov bl, al\n"
                    "out 0x80, al\nin al, 0x60\nmov cl, al\nin ax, 0x70\nnop")
    uc = flat_engine(code)
    cpu = impl(uc)
    cpu.install_hooks()
    written = []
    cpu.set_io_handlers(lambda port, size: 0x5A, lambda port, size, value: written.append((port, size, value)))
    cpu.claim_ports(0x3F8, 8)
    cpu.claim_ports(0x80, 1, "ignore")
    cpu.run(0x1000, 0x1000 + len(code) - 1)
    regs = cpu.read_gprs()
    assert written == [(0x3F8, 1, 0x41)]
    assert regs[3] & 0xFF == 0x5A                       # bl: from the Python handler
    assert regs[1] & 0xFF == 0xFF                       # cl: floating bus
    assert regs[0] & 0xFFFF == 0xFFFF                   # ax: floating bus, 16-bit
    assert cpu.counters["io_python"] == 2
    assert cpu.counters["io_ignored"] == 1 and cpu.counters["io_float"] == 2
    assert cpu.port_action(0x3F9) == "python" and cpu.port_action(0x81) == "float"
    with pytest.raises(ValueError):
        cpu.claim_ports(0xFFFF, 2)


def test_claim_python_ports_needs_handlers():
    for impl in (_native.Cpu, _native.PyCpu):
        cpu = impl(flat_engine(b"\x90"))
        with pytest.raises(RuntimeError):
            cpu.claim_ports(0x60, 1)


@IMPLS
def test_reset_old_exception_and_fault_info(impl):
    w = World()
    code = assemble("cli\nnop")
    w.load(code)
    w.enter_ring3(CODE)
    seen = w.record_interrupts()               # a plain hook: no reset of its own
    w.uc.emu_start(CODE, CODE + 1)
    assert seen[0][0] == 13
    cpu = impl(w.uc)
    assert cpu.fault_info()[0] == 13           # old_exception still set (U4)
    assert cpu.reset_old_exception() == 13
    assert cpu.fault_info()[0] == -1
    assert cpu.reset_old_exception() == -1     # nothing to do the second time


def test_native_and_twin_agree_on_one_program():
    """The same program, the same handlers: identical events, registers, counters."""
    code = assemble("mov ecx, 5\n.l: out 0xe9, al\ninc eax\nint 0x40\nloop .l\nin al, 0x61\nint 0x41\nnop")
    results = []
    for impl in (_native.Cpu, _native.PyCpu):
        uc = flat_engine(code)
        cpu = impl(uc)
        cpu.install_hooks()
        out = []
        cpu.set_io_handlers(lambda p, s: 0x20, lambda p, s, v: out.append(v))
        cpu.claim_ports(0xE9, 1)
        cpu.set_vector_handler(0x40, lambda v, e, i: True)
        ev = cpu.run(0x1000, 0x1000 + len(code) - 1)
        results.append((ev, cpu.read_gprs(), cpu.counters, out))
    assert results[0] == results[1]
    assert results[0][0].vector == 0x41 and results[0][3] == [0, 1, 2, 3, 4]


def test_layout_must_match_the_engine():
    uc = flat_engine(b"\x90")
    wrong = ContextLayout(size=123, old_exception=0, error_code=4, exception_is_int=8)
    for impl in (_native.Cpu, _native.PyCpu):
        with pytest.raises(RuntimeError, match="context size"):
            impl(uc, wrong)


def test_calibration_refuses_ambiguous_or_missing_offsets():
    with pytest.raises(CalibrationError, match="exactly one"):
        _one([], "old_exception")
    with pytest.raises(CalibrationError, match="exactly one"):
        _one([10, 20], "the error code")


def test_calibration_is_stable_and_verified():
    a, b = _native.calibrate(), _native.calibrate()
    assert a == b
    assert len({a.old_exception, a.error_code, a.exception_is_int}) == 3


def test_extension_shares_the_binding_library():
    _native.check_same_library()
    assert _native.build_info()["same_libunicorn"] is True
