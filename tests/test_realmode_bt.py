"""Real-mode guest code through the binary translator.

Each program runs twice: through hybrid86 (translated into the TC) and on bare
Unicorn in real mode (tests/realmode_harness.py).  Output on the debug
console, the exit status and the general registers must agree, and no guest
instruction may ever be fetched from guest RAM under hybrid86."""

from __future__ import annotations

import pytest

from realmode_harness import bt_registers, run_bt, run_reference
from x86env import have_nasm

pytestmark = pytest.mark.skipif(not have_nasm(), reason="nasm is not installed")

EXIT = "mov al, 0\nout 0xf4, al\njmp $\n"

PROGRAMS = {
    "arith_loops_calls": """
        mov ax, 7
        mov bx, 3
        mov cx, 10
    .l: add ax, bx
        adc dx, 0
        imul bx, bx, 3
        and bx, 0x7ff
        call sub1
        loop .l
        xor si, si
        mov di, 1
        shl ax, 1
        sbb si, di
        mov al, 'k'
        out 0xe9, al
    """ + EXIT + """
    sub1:
        push cx
        inc cx
        xchg ax, cx
        xchg ax, cx
        pop cx
        ret
    """,
    "segments_and_cs_overrides": """
        mov ax, 0x2000
        mov es, ax
        push es
        pop ds
        mov word [0x10], 0x1234
        mov bx, ds
        les di, [cs:farptr]
        mov dx, es
        mov ax, [es:di]
        mov cx, [cs:value]
        inc word [cs:value]
        mov si, [cs:value]
        push cs
        pop ax
        lds bp, [cs:farptr]
        mov bp, ds
    """ + EXIT + """
    farptr: dw 0x0010, 0x2000
    value:  dw 41
    """,
    "strings_with_rep": """
        mov ax, 0x3000
        mov es, ax
        xor ax, ax
        mov ds, ax
        mov si, text
        add si, 0x7C00 - 0x7C00
        mov di, 0x100
        mov cx, 11
        cld
        rep movsb
        mov si, 0x100
        push es
        pop ds
        mov cx, 11
    .p: lodsb
        out 0xe9, al
        loop .p
        mov di, 0x200
        mov al, 'z'
        mov cx, 5
        rep stosb
        mov di, 0x200
        mov cx, 6
        repe scasb
        mov bx, cx
        xor ax, ax
        mov ds, ax
    """ + EXIT + """
    text: db "hello world"
    """,
    "interrupts_flags": """
        xor ax, ax
        mov ds, ax
        mov word [0x40*4], isr
        mov [0x40*4+2], cs
        mov word [0*4], divide_error
        mov [0*4+2], cs
        sti
        pushf
        pop bx
        cli
        pushf
        pop cx
        mov ax, 5
        int 0x40
        int 0x40
        mov dl, 0
        mov ax, 10
        div dl
        mov al, 'e'
        out 0xe9, al
        popf
        std
        pushf
        pop dx
        cld
    """ + EXIT + """
    isr:
        inc si
        pushf
        pop di
        mov al, 'i'
        out 0xe9, al
        iret
    divide_error:
        mov al, 'D'
        out 0xe9, al
        mov bp, sp
        add word [ss:bp], 2
        iret
    """,
    "indirect_and_far_flow": """
        mov bx, 2
        call [cs:table+bx]
        mov bx, 0
        mov si, table
        call [cs:si+bx]
        call far [cs:farfn]
        push cs
        push word back
        retf
    back:
        mov ax, handler2
        jmp ax
    after:
        push ax
        push bx
        call sub_ret4
        mov si, sp
    """ + EXIT + """
    sub_ret4:
        ret 4
    f0: mov al, '0'
        out 0xe9, al
        ret
    f1: mov al, '1'
        out 0xe9, al
        ret
    ffar:
        mov al, 'F'
        out 0xe9, al
        retf
    handler2:
        mov al, 'j'
        out 0xe9, al
        jmp after
    table: dw f0, f1
    farfn: dw ffar, 0
    """,
    "same_return_ip_in_two_code_segments": """
        xor ax, ax
        mov ds, ax
        call both                 ; returns to the same IPs below under CS=0 ...
        mov ax, 0x1000
        mov es, ax
        mov si, 0x7C00
        mov di, 0x7C00
        mov cx, 256
        cld
        rep movsw                 ; copy this code to 1000:7C00
        jmp 0x1000:again          ; ... and under CS=0x1000
    again:
        call both
        mov bx, cs
    """ + EXIT + """
    both:
        call work
        call work
        ret
    work:
        mov al, 'w'
        out 0xe9, al
        ret
    """,
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_translated_code_matches_real_mode_reference(name):
    src = PROGRAMS[name]
    machine, out, status, guest_fetches = run_bt(src)
    ref_out, ref_status, ref_regs = run_reference(src)
    assert guest_fetches == [], "guest code ran from its original address"
    assert (out, status) == (ref_out, ref_status)
    assert bt_registers(machine) == ref_regs
    stats = machine.statistics()
    assert stats["units_translated"] > 0 and stats["bt_instructions"] > 0


def test_program_output_and_statistics():
    machine, out, status, _ = run_bt(PROGRAMS["interrupts_flags"])
    assert out == b"iiDe" and status == 0
    calls = machine.statistics()["callouts"]
    assert calls.get("chain", 0) > 0 and calls.get("lookup_miss", 0) > 0
    for kind in ("int", "iret", "retf", "callf", "jmpf"):
        assert kind not in calls, kind                 # far flow stays in the TC
    assert machine.statistics()["exceptions"] == {"exception_0": 1}
    assert "flags" not in calls                        # cli/sti/pushf/popf run as copies
    assert machine.statistics()["chain_patches"] > 0


def test_ret_and_indirect_branches_stay_in_the_tc_on_a_hit():
    src = """
        mov cx, 200
    .l: call sub
        mov bx, sub
        call bx
        loop .l
    """ + EXIT + "sub: inc dx\nret\n"
    machine, out, status, _ = run_bt(src)
    stats = machine.statistics()
    assert status == 0 and bt_registers(machine)["edx"] == 400
    assert stats["lookup_misses"] <= 3                 # one per distinct target, not per ret
    assert "ret" not in stats["callouts"] and "call_ind" not in stats["callouts"]


def test_landing_pads_check_the_code_segment():
    machine, out, status, _ = run_bt(PROGRAMS["same_return_ip_in_two_code_segments"])
    assert out == b"wwww" and status == 0
    assert machine.statistics()["lookup_misses"] >= 4  # the CS check sent the second CS to the miss path
    assert bt_registers(machine)["ebx"] & 0xFFFF == 0x1000


def test_segment_loads_and_far_pointer_loads_stay_in_the_tc():
    src = """
        mov cx, 100
    .l: mov ax, cx
        mov es, ax
        push es
        pop ds
        mov dx, ds
        loop .l
        xor ax, ax
        mov ds, ax
        mov word [0x600], 0x1234
        mov word [0x602], 0x5678
        lds si, [0x600]
        mov bx, ds
        mov di, 0x5FE
        push ds
        xor ax, ax
        mov ds, ax
        les di, [di+2]                  ; disp8 form, target register in the address
        mov dx, es
        mov bp, 0x600
        lss sp, [ss:bp]                 ; stack switch
        mov [0x700], es                 ; segment register to memory
        mov [cs:0x7F0], cs
        mov cx, [0x700]
        pop ds
    """ + EXIT
    machine, out, status, _ = run_bt(src)
    ref_out, ref_status, ref_regs = run_reference(src)
    assert bt_registers(machine) == ref_regs and status == ref_status == 0
    calls = machine.statistics()["callouts"]
    assert calls.get("seg_load", 0) == 0 and calls.get("seg_read", 0) == 0
    assert machine.seg_value(0) == 0x5678 and machine.mirror.read_base(0) == 0x56780


def test_self_modifying_code_is_retranslated():
    src = """
        xor ax, ax
        mov ds, ax
        mov cx, 3
    again:
    patched:
        mov al, 'a'
        out 0xe9, al
        inc byte [cs:patched+1]
        loop again
    """ + EXIT
    machine, out, status, guest_fetches = run_bt(src)
    assert out == b"abc" and status == 0 and guest_fetches == []
    stats = machine.statistics()
    assert stats["traces_fired"] >= 1 and stats["units_invalidated"] >= 1


@pytest.mark.parametrize("native", [True, False])
def test_a_store_into_a_later_instruction_of_its_own_unit_is_seen(native):
    """The first store into the page (a write trace) drops the running unit:
    the rest of it is cut off and translated anew (machine._cut_dropped_unit);
    later passes run on a page that is no longer write-protected, where a
    unit ends after each store and the next unit's entry check sees it."""
    src = """
        xor ax, ax
        mov ds, ax
        mov cx, 3
    again:
        mov bl, cl
        add bl, 0x40
        mov [target], bl
        mov al, 'Z'
    target equ $-1
        out 0xe9, al
        mov di, stos_target
        mov al, 0x90
        push cx
        mov cx, 1
        rep stosb
        pop cx
        cli
    stos_target equ $-1
        dec cx
        jnz again
    """ + EXIT
    machine, out, status, guest_fetches = run_bt(src, native=native)
    assert out == b"CBA" and status == 0 and guest_fetches == []
    assert machine.statistics()["dropped_units_cut"] >= 1
    ref_out, ref_status, _ = run_reference(src)
    assert ref_out == out


def test_twin_adapter_runs_the_same_translation():
    src = PROGRAMS["indirect_and_far_flow"]
    native = run_bt(src, native=True)
    twin = run_bt(src, native=False)
    assert native[1:3] == twin[1:3]
    assert bt_registers(native[0]) == bt_registers(twin[0])


def test_lookup_hits_are_counted():
    src = "mov cx, 300\n.l: call sub\nloop .l\n" + EXIT + "sub: ret\n"
    machine, _, status, _ = run_bt(src)
    stats = machine.statistics()
    assert status == 0
    assert stats["lookup_misses"] == 1 and stats["lookup_hits"] == 299


def test_a_full_translation_cache_is_flushed_and_the_guest_goes_on():
    from monitor.memory import TC_ALLOC_END

    src = """
        mov cx, 50
    .l: call a
        call b
        loop .l
    """ + EXIT + """
    a:  inc si
        ret
    b:  inc di
        ret
    """
    from realmode_harness import ORG
    from monitor.machine import Machine
    from devices.exit_port import ExitPort
    from x86env import assemble

    m = Machine(memory_mb=2)
    m.attach(ExitPort(on_exit=lambda v: m.stop("exit", v)))
    m.memory.write(ORG, assemble(src, bits=16, org=ORG))
    m.enter_real_mode(0, ORG)
    m.tc.top = TC_ALLOC_END - 1100            # room for about one unit (MAX_UNIT_BYTES is 1024)
    m.run(timeout_s=10)
    stats = m.statistics()
    regs = bt_registers(m)
    assert m.exit_status == 0 and regs["esi"] == 50 and regs["edi"] == 50
    assert stats["tc_flushes"] >= 1
    assert stats["bt_instructions"] >= 50 * 6      # counts survive the flush


def test_a20_gate_wraps_addresses_above_1mib():
    """Port 0x92 opens the A20 gate: FFFF:0010 is linear 0x100000 only then."""
    from devices.port92 import A20Gate, Port92
    from devices.exit_port import ExitPort
    from monitor.machine import Machine
    from realmode_harness import ORG
    from x86env import assemble

    src = """
        xor ax, ax
        mov ds, ax
        mov byte [0x0000], 0x11
        mov ax, 0xFFFF
        mov es, ax
        mov byte [es:0x0010], 0x22    ; A20 off: lands on 0x000000
        mov bl, [0x0000]
        in al, 0x92
        or al, 2
        out 0x92, al                  ; A20 on
        mov byte [es:0x0010], 0x33    ; now linear 0x100000
        mov bh, [0x0000]
        mov cl, [es:0x0010]
    """ + EXIT
    m = Machine(memory_mb=2)
    gate = A20Gate(m.mmu.set_a20, initial=False)
    m.attach(Port92(on_a20=gate.source("port92")))
    m.attach(ExitPort(on_exit=lambda v: m.stop("exit", v)))
    m.memory.write(ORG, assemble(src, bits=16, org=ORG))
    m.enter_real_mode(0, ORG)
    m.run(timeout_s=10)
    regs = bt_registers(m)
    assert m.exit_status == 0
    assert regs["ebx"] & 0xFFFF == 0x2222             # both reads of 0x0 saw the wrapped write
    assert regs["ecx"] & 0xFF == 0x33 and m.memory.ram[0x100000] == 0x33


def test_the_real_gdtr_is_always_the_shadow_gdt():
    from unicorn.x86_const import UC_X86_REG_GDTR

    from bt import abi

    src = """
        xor ax, ax
        mov ds, ax
        mov word [0x800], 0x17
        mov dword [0x802], 0x00001000
        lgdt [0x800]                  ; the guest's own GDT (virtual in real mode)
        sgdt [0x810]
        mov dx, [0x810]
        mov ebx, [0x812]
    """ + EXIT
    machine, out, status, _ = run_bt(src)
    _, base, limit, _ = machine.uc.reg_read(UC_X86_REG_GDTR)
    assert status == 0 and base == abi.GDT_LINEAR               # the real CPU: the shadow GDT
    assert machine.vcpu.gdtr == (0x1000, 0x17)                  # the guest: its own, virtually
    regs = bt_registers(machine)
    assert regs["edx"] & 0xFFFF == 0x17 and regs["ebx"] == 0x1000   # sgdt shows the guest its own


@pytest.mark.parametrize("native", [True, False])
def test_code_between_clearing_pe_and_the_far_jump_runs_at_the_cached_cs_base(native):
    """Boot loaders' PM -> RM thunks (found with SYSLINUX): after `mov cr0`
    clears PE, CS keeps its protected-mode base (here 0, selector 0x10, not
    0x10 x 16) until the far jump; the translator fetches from that base."""
    src = """
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 0x10:pm16
    pm16:
        mov ax, 0x18
        mov ds, ax
        mov eax, cr0
        and al, 0xfe
        mov cr0, eax
        mov al, 'R'
        out 0xe9, al
        mov al, 'M'
        out 0xe9, al
        jmp 0:rm
    rm:
        xor ax, ax
        mov ds, ax
        mov al, '!'
        out 0xe9, al
    """ + EXIT + """
        align 8
    gdt:
        dq 0, 0
        dq 0x00009A000000FFFF
        dq 0x000092000000FFFF
    gdtr:
        dw gdtr - gdt - 1
        dd gdt
    """
    machine, out, status, guest_fetches = run_bt(src, native=native)
    assert out == b"RM!" and status == 0 and guest_fetches == []
    ref_out, ref_status, _ = run_reference(src)
    assert ref_out == out


@pytest.mark.parametrize("native", [True, False])
def test_a_taken_jcc_is_chained_to_its_target_unit_and_restored_when_it_goes(native):
    """Chaining a jcc's taken stub also re-points the jcc at the target unit
    (one translation block less per loop iteration); dropping the target
    unit puts the jcc back on its stub, which then retranslates."""
    src = """
        xor ax, ax
        mov ds, ax
        xor dx, dx
        mov cx, 200
    again:
        add bx, cx
    patch:
        mov al, 'a'
        dec cx
        jnz again
        out 0xe9, al
        inc dx
        cmp dx, 2
        je done
        mov byte [patch+1], 'b'     ; drops the loop unit: the jcc goes back to its stub
        mov cx, 3
        jmp again
    done:
    """ + EXIT
    machine, out, status, guest_fetches = run_bt(src, native=native)
    assert out == b"ab" and status == 0 and guest_fetches == []
    stats = machine.statistics()
    assert stats["jcc_patches"] >= 1 and stats["units_invalidated"] >= 1
    assert bt_registers(machine)["ebx"] & 0xFFFF == (sum(range(1, 201)) + 3 + 2 + 1) & 0xFFFF
