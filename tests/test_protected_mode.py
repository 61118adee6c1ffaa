"""Protected mode through hybrid86: ring-0 BT, ring-3 and V8086 DE, world
switches, IDT delivery, paging and page faults, the monitor-data window.

Each test runs a small program (tests/pm/prologue.inc + a body) through the
machine with the native adapter and MMU, and its Python twins where the
behaviour is mechanism-specific, and checks the guest's own output (port
0xE9) against values worked out from its symbols, plus the statistics that
show which world ran what.
"""

from __future__ import annotations

import shutil

import pytest

from pm_harness import run_pm

pytestmark = pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed (apt-get install nasm)")

BOTH = pytest.mark.parametrize("native", [True, False], ids=["native", "python"])


def _exc(vector, error, eip, cs, cr2=None):
    s = f"E {vector:08X} {error:08X} {eip:08X} {cs:08X}"
    return s if cr2 is None else f"{s} {cr2:08X}"


RING3 = r"""
body:
    push dword user
    call to_ring3
user:
    mov ecx, 100
.l: add ebx, ecx
    loop .l
    mov eax, 1
    mov ebx, 0x1234
    int 0x80
    mov eax, 2
    int 0x80
    mov dword [resume], after_cli
faulting_cli:
    cli
after_cli:
    mov eax, 0
    int 0x80
"""


@BOTH
def test_ring3_runs_directly_and_traps_back(native):
    m, out, status, sym = run_pm(RING3, native=native)
    assert status == 0, m.stop_reason
    assert out == ["S 00001234", "S 00000003", _exc(13, 0, sym["faulting_cli"], 0x1B)]
    st = m.statistics()
    assert st["de_instructions"] >= 200            # the 100-iteration loop ran in DE
    assert st["bt_instructions"] > 100             # real mode and ring 0 ran in BT
    assert st["world_switches"] >= 6               # in and out three times at least
    assert st["de_software_interrupts"] == 3       # int 0x80 x3 from ring 3
    assert st["exceptions"] == {"exception_13": 1}


PAGING = r"""
body:
    call setup_paging
    mov edi, 0x82000
    mov ecx, 1024
    xor eax, eax
    rep stosd
    mov dword [0x80004], 0x82000 | 7
    mov dword [pf_map], 0x82000 - 0x400*4
    mov eax, [0x400123]
    mov dword [0x401ffe], 0x11223344
    ; code for the crossing fetch: 3 nops and the first 2 bytes of mov eax, 0 at
    ; 0x404ffb, the rest (and int 0x80) on 0x405000, which is then unmapped again
    mov dword [0x82000 + 4*4], 0x404000 | 7
    mov dword [0x82000 + 5*4], 0x405000 | 7
    mov dword [0x404ffb], 0xB8909090
    mov dword [0x404fff], 0x00000000
    mov dword [0x405003], 0x000080CD
    mov dword [0x82000 + 5*4], 0
    invlpg [0x405000]
    push dword user
    call to_ring3
user:
    mov dword [0x403010], 5
    jmp 0x404ffb
"""


@BOTH
def test_page_faults_are_reflected_with_exact_cr2_and_error_codes(native):
    m, out, status, sym = run_pm(PAGING, native=native, memory_mb=8)
    assert status == 0, m.stop_reason
    assert out[0].startswith("E 0000000E 00000000 ") and out[0].endswith(" 00000008 00400123")
    assert out[1].endswith(" 00000008 00401FFE") and out[1].split()[2] == "00000002"   # ring-0 write
    assert out[2].endswith(" 00000008 00402000")       # the same store, its second page
    assert out[3] == _exc(14, 6, sym["user"], 0x1B, 0x403010)                         # ring-3 write
    assert out[4] == _exc(14, 4, 0x404FFE, 0x1B, 0x405000)   # a ring-3 fetch crossing into a missing page
    assert len(out) == 5
    st = m.statistics()
    assert st["page_faults_reflected"] == 5 and st["de_instructions"] > 0


SYSENTER = r"""
body:
    mov ecx, 0x174
    xor edx, edx
    mov eax, 0x08
    wrmsr
    mov ecx, 0x175
    mov eax, 0x6F000
    wrmsr
    mov ecx, 0x176
    mov eax, kernel_entry
    wrmsr
    push dword user
    call to_ring3
user:
    mov ebx, 0x55
    mov ecx, esp
    mov edx, back
    sysenter
back:
    mov eax, 2
    int 0x80
    mov eax, 0
    int 0x80
kernel_entry:
    mov eax, ebx
    call puthex32
    mov eax, esp
    call space
    call puthex32
    mov eax, cs
    call space
    call puthex32
    call newline
    sysexit
"""


def test_sysenter_from_ring3_and_sysexit_back():
    m, out, status, _ = run_pm(SYSENTER)
    assert status == 0, m.stop_reason
    assert out == ["00000055 0006F000 00000008", "S 00000003"]
    assert m.statistics()["sysenter"] == 1


V86 = r"""
body:
    mov eax, v86_gp
    mov [idt + 13*8], ax
    shr eax, 16
    mov [idt + 13*8 + 6], ax
    mov dword [0x20000], 0x90CD21CD     ; int 0x21 ; int 0x90 at 0x2000:0000 (V86)
    push dword 0            ; gs
    push dword 0            ; fs
    push dword 0x1111       ; ds
    push dword 0            ; es
    push dword 0x3000       ; ss
    push dword 0x0FF0       ; esp
    push dword 0x00020202   ; eflags: VM, IF, IOPL 0
    push dword 0x2000       ; cs
    push dword 0            ; eip
    iretd
v86_gp:                     ; error, eip, cs, eflags, esp, ss, es, ds, fs, gs
    mov ecx, 7
    mov esi, esp
.p: lodsd
    call puthex32
    call space
    loop .p
    mov ax, ds
    movzx eax, ax
    call puthex32
    call newline
    mov eax, 0
    jmp exit_ok
"""


@BOTH
def test_v86_int_with_iopl0_traps_to_the_guest_gp_handler_with_a_v86_frame(native):
    m, out, status, _ = run_pm(V86, native=native)
    assert status == 0, m.stop_reason
    # error, eip, cs, eflags (VM IF), esp, ss, es, and DS reads 0 in the handler
    assert out == ["00000000 00000000 00002000 00020202 00000FF0 00003000 00000000 00000000"]
    st = m.statistics()
    assert st["de_instructions"] >= 1 and st["exceptions"] == {"exception_13": 1}


IO_DENIED = r"""
body:
    mov dword [0x600], 0
    push dword user
    call to_ring3
user:
    mov dword [resume], after_in
    mov eax, 0x12345678
    mov dx, 0x3F8
denied_in:
    in al, dx               ; IOPL 0, no bitmap: #GP(0)
    mov [0x600], eax        ; same block: must not land
    inc ecx
after_in:
    mov ebx, eax
    mov eax, 1
    int 0x80
    mov ebx, [0x600]
    mov eax, 1
    int 0x80
    mov eax, 0
    int 0x80
"""


@BOTH
def test_ring3_io_the_bitmap_denies_is_a_precise_gp(native):
    """U7: the CPU does not check I/O permission and a stop from the I/O hook
    lands at the end of the block (U16); the monitor saves the context in the
    hook, freezes the TLB, restores and delivers #GP(0) at the `in`."""
    m, out, status, sym = run_pm(IO_DENIED, native=native)
    assert status == 0, m.stop_reason
    assert out == [_exc(13, 0, sym["denied_in"], 0x1B), "S 12345678", "S 00000000"]
    assert m.stats["de_io_denied"] == 1


PM16 = r"""
body:
    jmp 0x30:code16
bits 16
code16:
    mov ax, 0x38
    mov ss, ax
    mov sp, 0x7000
    push word 0x1234
    pop bx
    mov ax, 0x10
    lsl cx, ax
    o32 jmp dword 0x08:back32
bits 32
back32:
    mov ax, 0x10
    mov ss, ax
    mov esp, 0x70000
    movzx eax, bx
    call puthex32
    call space
    movzx eax, cx
    call puthex32
    call newline
    mov eax, 0
    jmp exit_ok
"""


def test_16bit_protected_mode_code_and_stack():
    m, out, status, _ = run_pm(PM16)
    assert status == 0, m.stop_reason
    assert out == ["00001234 0000FFFF"]          # push/pop through a 16-bit SS; lsl of the 16-bit data segment


TOP4M = r"""
body:
    call setup_paging
    ; page table 0x83000 maps 0xFFC00000..0xFFFFFFFF onto 16 frames at 0x200000, round robin
    mov edi, 0x83000
    mov ecx, 1024
    xor ebx, ebx
.m: mov eax, ebx
    and eax, 15
    shl eax, 12
    add eax, 0x200000 | 3
    stosd
    inc ebx
    loop .m
    mov dword [0x80000 + 1023*4], 0x83000 | 3
    mov eax, cr3
    mov cr3, eax
    ; write each page's linear address into its first and last dword
    mov esi, 0xFFC00000
.w: mov [esi], esi
    mov [esi + 0xFFC], esi
    add esi, 0x1000
    jnz .w
    ; read back: frame k holds the last page written onto it (pages 1008+k)
    mov esi, 0xFFC00000
    xor edx, edx            ; mismatches
    xor ebx, ebx
.r: mov eax, ebx
    and eax, 15
    add eax, 1008
    shl eax, 12
    add eax, 0xFFC00000
    cmp [esi], eax
    je .ok1
    inc edx
.ok1:
    cmp [esi + 0xFFC], eax
    je .ok2
    inc edx
.ok2:
    inc ebx
    add esi, 0x1000
    jnz .r
    mov eax, edx
    call puthex32
    call newline
    mov eax, [0x200000]
    call puthex32
    call newline
    mov eax, 0
    jmp exit_ok
"""


@BOTH
def test_a_ring0_guest_owns_the_whole_top_4mib(native):
    """The probe from the brief: a ring-0 guest maps every page of
    0xFFC00000-0xFFFFFFFF, writes and reads them all, and sees its own
    memory; the monitor moved its data window out of the way and its TC kept
    running (the program went on to print and exit)."""
    m, out, status, _ = run_pm(TOP4M, native=native, memory_mb=8)
    assert status == 0, m.stop_reason
    assert out == ["00000000", "FFFF0000"]
    assert m.stats["data_window_moves"] == 1 and m.abi.base != 0xFFF00000
    assert not m.window.guest_maps(m.abi.base)


SSE = r"""
body:
    mov eax, cr4
    or eax, 0x600
    mov cr4, eax
    mov dword [0x600], 0x3f800000      ; 1.0f
    movss xmm0, [0x600]
    addss xmm0, xmm0
    movss [0x604], xmm0
    mov eax, [0x604]
    call puthex32
    call newline
    mov eax, 1
    cpuid
    mov eax, edx
    call puthex32
    call newline
    push dword user
    call to_ring3
user:
    movss xmm1, [0x600]
    mov eax, 1
    cpuid
    mov ebx, edx
    mov eax, 1
    int 0x80
    mov eax, 0
    int 0x80
"""


@BOTH
def test_sse_runs_in_bt_and_de_and_cpuid_is_coherent(native):
    """SSE instructions (which the decoder sizes but does not model) are
    copied in BT and run by the emulated pentium3; the kernel's CPUID (the
    monitor's) and the user's (run directly) name the same part, the kernel's
    without the APIC, MTRR, MCA, PAT, PAE and PSE-36 the monitor does not emulate."""
    from monitor.cpuid import LEAF1_EDX
    m, out, status, _ = run_pm(SSE, native=native)
    assert status == 0, m.stop_reason
    assert out[0] == "40000000"                               # 1.0f + 1.0f in BT
    kernel, user = int(out[1], 16), int(out[2].split()[1], 16)
    assert kernel == LEAF1_EDX and kernel & ~user == 0        # a subset of the real part
    assert user & (1 << 9) and not kernel & (1 << 9)          # APIC: the part has one, the kernel never sees it


def test_a_monitor_action_between_runs_leaves_shared_tc_code_alone():
    """Found as an intermittent Linux oops (EIP 0, EAX holding a return
    address): a single step ended inside the shared lookup code, and the
    action after it took the shared PM_LOOKUP_MISS callout (guest IP 0) for
    a place to resume.  Shared code and landing pads stand for no guest
    instruction; only a TC flush retargets the CPU."""
    from monitor.machine import EIP
    from monitor.modes import World

    m, out, status, sym = run_pm(RING3)
    assert status == 0, m.stop_reason
    m.world = World.BT
    for shared in (m.pm_miss, m.real_miss, m.pm_translator.dispatch):
        assert m._resume_point(shared) is None
        for pad in list(m.pad_addresses)[:3]:
            assert m._resume_point(pad) is None
        m.eip = shared
        regs = m.cpu.read_gprs()
        regs[EIP] = shared
        m.cpu.write_gprs(regs)
        m._at_boundary(lambda: None)                       # no flush: the CPU stays where it is
        assert m.eip == shared and m.cpu.read_gprs()[EIP] == shared and m.stop_reason == "guest exit 0"


def test_a_flush_between_runs_inside_translated_code_is_a_clean_stop():
    from monitor.modes import World

    m, out, status, sym = run_pm(RING3)
    assert status == 0
    m.stop_reason = None
    unit = m.tc.all_units[-1]
    inside = unit.tc_start + 1                             # not an instruction boundary
    assert m.guest_ip_at(inside) is None
    m.eip = inside
    m.world = World.BT
    m._at_boundary(m.flush_translations)
    assert m.stop_reason is not None and "flushed" in m.stop_reason
