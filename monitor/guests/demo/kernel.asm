; kernel.asm - the hybrid86 demo guest: a tiny x86 "operating system" that
; walks the CPU through the features a virtual machine monitor must get
; right, checking each one and reporting on COM1, port 0xE9 and the VGA
; text screen:
;
;   step 01 real-mode        BIOS teletype, E820 memory map, A20 via port 0x92
;   step 02 protected-mode   own GDT, CR0.PE, far jump, LTR; SGDT/SMSW/STR
;   step 03 pm16             16-bit protected-mode code segment, LSL/LAR
;   step 04 idt-exceptions   256-gate IDT; #DE, #UD, #GP(selector), INT3
;   step 05 paging           4 KiB + 4 MiB (PSE) pages, A/D bits, INVLPG, CR0.WP
;   step 06 demand-paging    not-present pages filled in by the #PF handler
;   step 07 ring3-tasks      PIC + PIT at 1 kHz, two preempted ring-3 tasks,
;                            int 0x80 and SYSENTER/SYSEXIT, user #PF and #GP
;   step 08 v86-bios         a V8086 task calls the real BIOS; the kernel's
;                            #GP handler is a small V86 monitor
;   step 09 monitor-region   map, write, read, run code in 0xFFC00000-0xFFFFFFFF
;   step 10 finish           summary, marker, exit status through port 0xF4
;
; Loaded by boot.asm at 0000:8000 and entered in real mode with DL = boot
; drive.  One flat binary: the real-mode part, the 16-bit protected-mode
; part and the V86 part come first because they must sit below linear
; 0x10000 (they run with segment bases of 0); then the 32-bit kernel; then
; the ring-3 code on pages of its own.  See docs/demo-guest.md.

%include "layout.inc"
%include "macros.inc"

        org KERNEL_BASE
        section .text
        section .data
        section .utext align=4096
        section .text

; ===========================================================================
;  16-bit part (must stay below linear 0x10000)
; ===========================================================================
        bits 16

kernel_entry:
        jmp 0x0000:rm_main              ; CS:IP = 0000:xxxx from here on

rm_main:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, RM_STACK_TOP
        sti                             ; the BIOS may want interrupts
        cld
        mov [boot_drive], dl

        call serial_init16
        PUTS16 "hybrid86 demo guest: protected mode, paging, ring 3, V8086", 10

        ; ---- step 01: real mode ------------------------------------------
        call detect_memory
        jc rm_fail
        call enable_a20
        jc rm_fail
        PUTS16 "step 01 real-mode: ok", 10
        jmp enter_protected_mode

; rm_fail: step 01 failed; SI = the reason.  Nothing after this step can
; run, so report and exit with status 1.
rm_fail:
        PUTS16 "step 01 real-mode: FAIL "
        call puts16
        mov al, 10
        call putc16
        PUTS16 "  aborted: every later step needs step 01", 10
        mov al, 1
        out EXIT_PORT, al
.halt:  cli
        hlt
        jmp .halt

; detect_memory: the memory map.  int 15h EAX=E820h returns one 20/24-byte
; entry per call, with EBX as the continuation value (0 after the last
; entry).  We count the entries and remember the end of the usable RAM that
; starts at or below 1 MiB and reaches above it.  Without E820 we fall back
; to int 15h AH=88h (KiB above 1 MiB).  CF=1 and SI=reason when there is
; not enough RAM for this demo (it uses physical memory up to 14 MiB).
detect_memory:
        xor ebx, ebx
        mov word [e820_count], 0
        mov dword [ram_top], 0
.next:  mov eax, 0xE820
        mov edx, 0x534D4150             ; 'SMAP'
        mov ecx, 24
        mov di, e820_entry
        mov dword [di + 20], 1          ; ACPI 3.0 attributes: "valid" if untouched
        int 0x15
        jc .end_of_list                 ; CF=1: unsupported, or past the end
        cmp eax, 0x534D4150
        jne .end_of_list
        inc word [e820_count]
        cmp ecx, 20
        jb .skip                        ; malformed entry
        cmp ecx, 24
        jb .use
        test byte [di + 20], 1          ; ACPI 3.0: bit 0 clear = ignore entry
        jz .skip
.use:   cmp dword [di + 16], 1          ; type 1 = usable RAM
        jne .skip
        cmp dword [di + 4], 0           ; base above 4 GiB: not for us
        jne .skip
        mov eax, [di]
        cmp eax, 0x100000
        ja .skip                        ; starts above 1 MiB
        cmp dword [di + 12], 0
        jne .cap                        ; length >= 4 GiB
        add eax, [di + 8]
        jnc .have_end
.cap:   mov eax, 0xFFFFFFFF
.have_end:
        cmp eax, [ram_top]
        jbe .skip
        mov [ram_top], eax
.skip:  test ebx, ebx
        jz .done
        cmp word [e820_count], 64       ; bound the loop
        jb .next
        jmp .done
.end_of_list:
        cmp word [e820_count], 0
        jne .done
        ; No E820: int 15h AH=88h gives the KiB of RAM above 1 MiB.
        mov byte [mem_method], 1
        mov ah, 0x88
        int 0x15
        jc .done
        movzx eax, ax
        shl eax, 10
        add eax, 0x100000
        mov [ram_top], eax
.done:  int 0x12                        ; base memory in KiB (conventional)
        mov [base_kib], ax
        INFO16 "memory: "
        cmp byte [mem_method], 0
        jne .via88
        movzx eax, word [e820_count]
        call put_dec16
        PUTS16 " E820 entries"
        jmp .tail
.via88: PUTS16 "no E820, int 15h AH=88h"
.tail:  PUTS16 ", base "
        movzx eax, word [base_kib]
        call put_dec16
        PUTS16 " KiB, RAM up to "
        mov eax, [ram_top]
        call put_hex16
        mov al, 10
        call putc16
        cmp dword [ram_top], RAM_NEEDED_TOP
        jae .enough
        mov si, msg_not_enough_ram
        stc
        ret
.enough:
        clc
        ret

; enable_a20: open the A20 gate with the "fast A20" bit of system control
; port A (0x92, bit 1; bit 0 would reset the CPU, so it is written as 0),
; and verify with a wrap test; fall back to int 15h AX=2401h.  CF=1 and
; SI=reason on failure.
enable_a20:
        call a20_wraps
        setz [a20_was_off]
        in al, PORT92
        or al, 0x02
        and al, 0xFE
        out PORT92, al
        mov cx, 1000                    ; bounded wait for the gate to open
.check: call a20_wraps
        jnz .on
        loop .check
        mov ax, 0x2401                  ; BIOS: enable A20
        int 0x15
        call a20_wraps
        jnz .on
        mov si, msg_a20_failed
        stc
        ret
.on:    INFO16 "a20: "
        cmp byte [a20_was_off], 0
        je .was_on
        PUTS16 "was off, "
        jmp .said
.was_on:
        PUTS16 "was already on, "
.said:  PUTS16 "port 0x92 written, wrap test passed", 10
        clc
        ret

; a20_wraps: ZF=1 when 0000:0500 and FFFF:0510 (linear 0x100500) are the
; same byte, i.e. the A20 line is masked.  Restores both bytes.
a20_wraps:
        push ax
        push ds
        push es
        xor ax, ax
        mov ds, ax
        dec ax
        mov es, ax                      ; ES = 0xFFFF
        mov al, [0x0500]
        mov ah, [es:0x0510]
        push ax
        mov byte [0x0500], 0x00
        mov byte [es:0x0510], 0xFF
        cmp byte [0x0500], 0xFF         ; ZF=1: the write to 0x100500 wrapped
        pop ax
        pushf
        mov [es:0x0510], ah
        mov [0x0500], al
        popf
        pop es
        pop ds
        pop ax
        ret

; enter_protected_mode: load the GDT, set CR0.PE and far-jump into the
; 32-bit code segment.  Interrupts stay off (IF=0) in the kernel from here
; on: only ring-3 and V86 code runs with IF=1.
enter_protected_mode:
        cli
        movzx eax, byte [0x451]         ; BDA: cursor row of page 0
        mov [vga_row], eax
        mov dword [vga_col], 0
        lgdt [gdt_desc]
        mov eax, cr0
        or eax, 1                       ; CR0.PE
        mov cr0, eax
        jmp dword SEL_KCODE:pm_entry    ; loads CS: now in 32-bit protected mode

%include "console16.inc"

; --- step 03: 16-bit protected mode ----------------------------------------
; Entered by a far jump to SEL_CODE16 (D=0: default operand and address size
; 16).  DS stays the flat 32-bit data segment, which 16-bit addressing reaches
; in its first 64 KiB; SS becomes the 16-bit data segment (B=0: SP, not ESP).
; Results go to pm16_res, checked by step_pm16 in 32-bit code.
pm16_entry:
        mov ax, SEL_DATA16
        mov ss, ax
        mov sp, PM16_STACK_TOP
        ; 16-bit arithmetic wraps at 16 bits and sets CF
        mov ax, 0xFFFF
        add ax, 2                       ; AX = 1, CF = 1
        sbb cx, cx                      ; CX = 0xFFFF because CF was set
        mov [pm16_res + 0], ax
        mov [pm16_res + 2], cx
        mov ax, 1000
        mov bx, 300
        mul bx                          ; DX:AX = 300000 = 0x0004:0x93E0
        mov [pm16_res + 4], ax
        mov [pm16_res + 6], dx
        ; 16-bit stack frame: two word arguments, near call, RET 4
        push word 0x5678
        push word 0x1234
        call pm16_sub                   ; AX = 0x5678 - 0x1234
        mov [pm16_res + 8], ax
        mov [pm16_res + 10], sp         ; back at PM16_STACK_TOP?
        ; segment limits and access rights, as seen from 16-bit code
        mov bx, SEL_KCODE
        lsl eax, bx                     ; 32-bit operand: 0xFFFFFFFF (G=1)
        mov [pm16_res + 12], eax
        mov bx, SEL_CODE16
        lsl ax, bx                      ; 0xFFFF
        mov [pm16_res + 16], ax
        lar eax, bx                     ; 0x00x09B00: P, DPL 0, code, D=0
        mov [pm16_res + 20], eax
        mov bx, SEL_UCODE | 3
        lar eax, bx                     ; 0x00CxFB00: P, DPL 3, code, G, D
        mov [pm16_res + 24], eax
        mov bx, SEL_BAD
        mov eax, 0x5A5A5A5A
        lsl eax, bx                     ; beyond the GDT: ZF=0, EAX unchanged
        setz cl
        mov [pm16_res + 28], eax
        mov [pm16_res + 32], cl
        ; back to 32-bit code
        mov ax, SEL_KDATA
        mov ss, ax
        jmp dword SEL_KCODE:pm16_return

pm16_sub:
        push bp
        mov bp, sp
        mov ax, [bp + 6]                ; first argument pushed (0x5678)
        sub ax, [bp + 4]                ; minus the second (0x1234)
        pop bp
        ret 4

; --- step 08: the V8086 task --------------------------------------------
; Real-mode code that runs in V8086 mode (CS=DS=ES=0, stack 3400:1000) and
; calls the BIOS.  With IOPL=0 every INT n, IRET, PUSHF, POPF, CLI, STI,
; IN, OUT and HLT traps with #GP to the kernel, which emulates it
; (v86mon.inc).  Results go to v86_res; HLT at v86_exit ends the task.
v86_code:
        int 0x12                        ; base memory size in KiB -> AX
        mov [v86_res_int12], ax
        mov ah, 0x00
        int 0x1A                        ; timer ticks since midnight -> CX:DX
        sbb bx, bx                      ; BX = 0xFFFF if CF (error) was set
        mov [v86_res_ticks], dx
        mov [v86_res_ticks + 2], cx
        mov [v86_res_cf], bx
        pushf                           ; virtual IF is 1 here ...
        pop ax
        mov [v86_res_flags_sti], ax
        cli
        pushf                           ; ... and 0 here
        pop ax
        mov [v86_res_flags_cli], ax
        sti
        mov ah, 0x02                    ; set cursor: page 0, row, column 0
        mov bh, 0
        mov dh, [v86_row]
        mov dl, 0
        int 0x10
        mov si, v86_msg
.next:  lodsb
        test al, al
        jz .done
        mov ah, 0x0E                    ; teletype output
        mov bx, 0x0007
        int 0x10
        jmp .next
.done:  mov byte [v86_res_done], 1
v86_exit:
        hlt                             ; #GP: the V86 monitor ends the task

; --- data used by 16-bit code (so it must also stay below 0x10000) -------
        align 8
; The GDT.  Accessed bits are preset so the CPU never writes to it.
gdt:
        dq 0                                            ; 0x00 null
        dw 0xFFFF, 0x0000
        db 0x00, 0x9B, 0xCF, 0x00                       ; 0x08 ring-0 code, 32-bit, 4 GiB
        dw 0xFFFF, 0x0000
        db 0x00, 0x93, 0xCF, 0x00                       ; 0x10 ring-0 data, 32-bit, 4 GiB
        dw 0xFFFF, 0x0000
        db 0x00, 0xFB, 0xCF, 0x00                       ; 0x18 ring-3 code, 32-bit, 4 GiB
        dw 0xFFFF, 0x0000
        db 0x00, 0xF3, 0xCF, 0x00                       ; 0x20 ring-3 data, 32-bit, 4 GiB
        dw 0xFFFF, 0x0000
        db 0x00, 0x9B, 0x00, 0x00                       ; 0x28 ring-0 code, 16-bit, 64 KiB
        dw 0xFFFF, 0x0000
        db 0x00, 0x93, 0x00, 0x00                       ; 0x30 ring-0 data, 16-bit, 64 KiB
        dw TSS_SIZE - 1, TSS_BASE & 0xFFFF
        db (TSS_BASE >> 16) & 0xFF, 0x89, 0x00, TSS_BASE >> 24 ; 0x38 32-bit TSS (available)
gdt_end:
GDT_LIMIT equ gdt_end - gdt - 1

gdt_desc:
        dw GDT_LIMIT
        dd gdt

boot_drive:     db 0
mem_method:     db 0                    ; 0 = E820, 1 = int 15h AH=88h
a20_was_off:    db 0
e820_count:     dw 0
base_kib:       dw 0
ram_top:        dd 0
vga_row:        dd 0
vga_col:        dd 0
vga_quiet:      db 0                    ; 1: the current line is serial-only
e820_entry:     times 24 db 0
pm16_res:       times 36 db 0
v86_row:        db 0
v86_res_done:   db 0
v86_res_int12:  dw 0
v86_res_ticks:  dd 0
v86_res_cf:     dw 0
v86_res_flags_sti: dw 0
v86_res_flags_cli: dw 0
v86_msg:        db "  v86: this line was printed by the BIOS (int 10h AH=0Eh) in V8086 mode", 0
msg_not_enough_ram: db "not enough RAM (need 14 MiB below 0x00E00000)", 0
msg_a20_failed: db "A20 stays off (port 0x92 and int 15h AX=2401h)", 0

; Everything above runs with segment base 0 and 16-bit offsets.
        times ((($ - $$) > 0x10000 - KERNEL_BASE) * -1) db 0

; ===========================================================================
;  32-bit kernel
; ===========================================================================
        bits 32

pm_entry:
        mov ax, SEL_KDATA
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        mov esp, KSTACK_TOP

        mov eax, 2
        mov edi, step_pmode
        call run_step
        call require_ok
        mov eax, 3
        mov edi, step_pm16
        call run_step
        call require_ok
        mov eax, 4
        mov edi, step_idt
        call run_step
        call require_ok
        mov eax, 5
        mov edi, step_paging
        call run_step
        call require_ok
        mov eax, 6
        mov edi, step_demand
        call run_step
        mov eax, 7
        mov edi, step_tasks
        call run_step
        mov eax, 8
        mov edi, step_v86
        call run_step
        mov eax, 9
        mov edi, step_probe
        call run_step
finish:
        mov eax, 10
        mov edi, step_finish
        call run_step
        cmp dword [fail_count], 0
        jne .failed
        PUTS "HYBRID86-DEMO-OK", 10
        xor al, al                      ; exit status 0 (QEMU: 1)
        jmp exit_guest
.failed:
        mov al, 1                       ; exit status 1 (QEMU: 3)
        jmp exit_guest

; exit_guest: write AL to the exit port (hybrid86: exit status AL; QEMU's
; isa-debug-exit: (AL << 1) | 1) and stop for good if nobody listens.
exit_guest:
        out EXIT_PORT, al
.halt:  cli
        hlt
        jmp .halt

; run_step: EAX = step number, EDI = the step's function.  The function
; returns when every check passed; a failed check (EXPECT, FAIL) jumps to
; step_failed, which unwinds the stack to here.  Prints the step's line.
run_step:
        mov [cur_step], eax
        mov byte [step_ok], 0
        mov [step_esp], esp
        call edi
        call print_step_prefix
        PUTS "ok", 10
        mov byte [step_ok], 1
        ret

step_failed:
        mov esp, [step_esp]
        inc dword [fail_count]
        call print_step_prefix
        PUTS "FAIL "
        mov esi, [fail_msg]
        call puts
        cmp byte [fail_vals], 0
        je .nl
        PUTS ": got "
        PUTHEX [fail_got]
        PUTS ", expected "
        cmp byte [fail_vals], 2
        jne .exact
        PUTS "at least "
.exact: PUTHEX [fail_want]
.nl:    mov al, 10
        call putc
        ret

; require_ok: steps 02-05 build what every later step stands on.
require_ok:
        cmp byte [step_ok], 0
        jne .ok
        PUTS "  aborted: the remaining steps depend on this one", 10
        add esp, 4                      ; drop our return address
        jmp finish
.ok:    ret

; print_step_prefix: "step NN name: " for the current step.
print_step_prefix:
        push eax
        push esi
        PUTS "step "
        mov eax, [cur_step]
        cmp eax, 10
        jae .two
        push eax
        mov al, '0'
        call putc
        pop eax
.two:   call put_dec
        mov al, ' '
        call putc
        mov eax, [cur_step]
        mov esi, [step_names + eax*4 - 4]
        call puts
        PUTS ": "
        pop esi
        pop eax
        ret

%include "console32.inc"
%include "interrupts.inc"
%include "v86mon.inc"
%include "steps.inc"

; ===========================================================================
;  data
; ===========================================================================
        section .data
        align 4
step_names:
        dd name01, name02, name03, name04, name05, name06, name07, name08, name09, name10
name01: db "real-mode", 0
name02: db "protected-mode", 0
name03: db "pm16", 0
name04: db "idt-exceptions", 0
name05: db "paging", 0
name06: db "demand-paging", 0
name07: db "ring3-tasks", 0
name08: db "v86-bios", 0
name09: db "monitor-region", 0
name10: db "finish", 0

        align 4
cur_step:       dd 0
step_esp:       dd 0
step_ok:        db 0
fail_vals:      db 0
        align 4
fail_count:     dd 0
fail_msg:       dd 0
fail_got:       dd 0
fail_want:      dd 0

%include "user.inc"
