; far_transfers - far jmp/call/retf between 32-bit and 16-bit code segments
; at ring 0 (direct and through memory), to conforming and bad targets,
; retf to ring 3 (outer-level return, with an immediate), far transfers
; from ring 3, and the sysenter/sysexit round trip.
%define PROBE_NAME "far_transfers"
%include "boot.inc"

SYSENTER_STACK equ 0x88000

probe_main:
        ; ---- jmp far 32 -> 16 -> 32
        mov ebx, esp
        jmp SEL_CODE16:c16_jmp
.back_jmp:
        sub ebx, esp
        add esp, 2                      ; what c16_jmp left pushed
        P32 "jmp16.cs", eax
        P32 "jmp16.push_delta", ebx
        P32 "jmp16.ecx", ecx
        ; ---- call far 32 -> 16 (returns with o32 retf)
        mov ebx, esp
        call SEL_CODE16:c16_callee32
        sub ebx, esp
        P32 "call16.cs", eax
        P32 "call16.ret_cs", ecx
        P32 "call16.ret_eip", edx
        P32 "call16.esp_delta", ebx
        ; ---- from 16-bit code: call far 16 -> 16 and 16 -> 32
        mov ebx, esp
        jmp SEL_CODE16:c16_caller
.back_caller:
        sub ebx, esp
        P32 "c16.call16.frame", eax
        P32 "c16.call32.cs", ecx
        P32 "c16.call32.frame_eip", edx
        P32 "c16.esp_delta", ebx
        P32 "c16.call32.frame_cs", esi
        ; ---- through memory: jmp m16:32, call m16:32, call m16:16 (o16)
        mov dword [v_scratch], .mem_target
        mov word [v_scratch + 4], SEL_CODE0
        jmp far [v_scratch]
        PUTS "not reached", 10
.mem_target:
        PUTS "jmp.m1632.ok", 10
        mov dword [v_scratch], f32_ret
        call far [v_scratch]
        P32 "call.m1632.cs", eax
        mov word [v_scratch + 8], c16_callee16
        mov word [v_scratch + 10], SEL_CODE16
        mov ebx, esp
        o16 call far [v_scratch + 8]
        sub ebx, esp
        P32 "o16call.m1616.cs", eax
        P32 "o16call.m1616.esp_delta", ebx
        ; ---- retf imm16 at the same level
        push dword 0x1111
        push dword 0x2222
        mov ebx, esp
        push cs
        push dword .after_retf8
        retf 8
.after_retf8:
        sub ebx, esp
        P32 "retf8.esp_delta", ebx
        ; ---- conforming code (CS keeps CPL in its RPL), execute-only code
        jmp SEL_CONFORM:.conform
.conform:
        mov eax, cs
        P32 "conform.cs", eax
        TRY jmp SEL_CODE0 | 3:.x        ; RPL 3 > CPL 0 to non-conforming code: #GP(0x08)
.x:
        jmp SEL_CODE0:.conform_back
.conform_back:
        jmp SEL_XONLY:.xonly
.xonly:
        mov eax, cs
        jmp SEL_CODE0:.xonly_back
.xonly_back:
        P32 "xonly.cs", eax
        ; ---- bad targets
        TRY jmp SEL_DATA0:0             ; data: #GP(0x10)
        TRY jmp 0:0                     ; null: #GP(0)
        TRY jmp 0x98:0                  ; beyond the GDT: #GP(0x98)
        TRY jmp SEL_CODE3:0             ; ring-3 code from ring 0: #GP(0x18)
        TRY call SEL_CODE3:0
        mov ebx, esp
        TRY call SEL_DATA0:0            ; #GP before anything is pushed
        sub ebx, esp
        P32 "call.bad.esp_delta", ebx
        ; retf to a more privileged level: #GP(0x08) when CPL 3 returns to ring 0
        RING3 r3_retf_inner, 0x202
        ; retf to a ring-0 data selector
        push dword SEL_DATA0
        push dword 0
        TRY retf
        add esp, 8

        ; ---- retf to ring 3 (outer level): SS:ESP from the stack, DS nulled
        mov dword [v_resume_eip], .back_retf3
        mov [v_resume_esp], esp
        mov ax, SEL_DATA0
        mov ds, ax
        mov ax, SEL_DATA3
        mov es, ax
        push dword SEL_DATA3
        push dword USER_STACK - 0x100
        push dword SEL_CODE3
        push dword r3_regs
        retf
.back_retf3:
        PUTS "retf3", 10
        call print_r3
        ; retf imm16 to ring 3: the immediate is released on both stacks
        mov dword [v_resume_eip], .back_retf3_imm
        mov [v_resume_esp], esp
        push dword SEL_DATA3
        push dword USER_STACK - 0x100
        push dword 0xAAAA
        push dword 0xBBBB
        push dword SEL_CODE3
        push dword r3_regs
        retf 8
.back_retf3_imm:
        PUTS "retf3.imm8", 10
        call print_r3
        ; 16-bit retf to ring 3
        mov dword [v_resume_eip], .back_retf3_16
        mov [v_resume_esp], esp
        push word SEL_DATA3
        push word 0x7100
        push word SEL_CODE3
        push word r3_regs
        o16 retf
.back_retf3_16:
        PUTS "retf3.o16", 10
        call print_r3

        ; ---- far transfers at ring 3
        RING3 r3_far_ldt, 0x202
        PUTS "r3.far_ldt", 10
        P32 "r3.far_ldt.cs_inside", dword [R3_EAX]
        P32 "r3.far_ldt.cs_after", dword [R3_EBX]
        P32 "r3.far_ldt.ret_cs", dword [R3_ECX]
        RING3 r3_far_ldt, 0x3202
        PUTS "r3.iopl3.far_ldt", 10
        P32 "r3.far_ldt.cs_inside", dword [R3_EAX]
        P32 "r3.far_ldt.cs_after", dword [R3_EBX]
        P32 "r3.far_ldt.ret_cs", dword [R3_ECX]
        RING3 r3_call_ring0, 0x202      ; #GP(0x08)
        RING3 r3_call_ring0, 0x3202
        RING3 r3_jmp_conform, 0x202     ; conforming ring-0 code from ring 3: CPL stays 3
        P32 "r3.conform.cs", dword [R3_EAX]
        P32 "r3.conform.int80.cs", dword [R3_CS]

        ; ---- sysenter / sysexit
        mov ecx, 0x174
        xor edx, edx
        mov eax, SEL_CODE0
        wrmsr
        mov ecx, 0x175
        mov eax, SYSENTER_STACK
        wrmsr
        mov ecx, 0x176
        mov eax, sysenter_entry
        wrmsr
        mov ecx, 0x174
        rdmsr
        P32 "msr174", eax
        mov ecx, 0x175
        rdmsr
        P32 "msr175", eax
        mov ecx, 0x176
        rdmsr
        P32 "msr176", eax
        P32 "msr176.edx", edx
        mov dword [v_scratch + 0x90], 0x202
        PUTS "== sysenter, IOPL 0", 10
        call sysenter_test
        mov dword [v_scratch + 0x90], 0x3202
        PUTS "== sysenter, IOPL 3", 10
        call sysenter_test
        ; sysexit at ring 3: #GP(0)
        RING3 r3_sysexit, 0x202
        ; sysenter with SYSENTER_CS = 0: #GP(0)
        mov ecx, 0x174
        xor eax, eax
        xor edx, edx
        wrmsr
        RING3 r3_sysenter, 0x3202
        RING3 r3_sysenter, 0x202
        ; a far jump to an LDT descriptor (a system descriptor, not a gate or TSS): #GP(0x58)
        ; (last: hybrid86 stops the VM on it)
        TRY jmp SEL_LDT:0
        ret

sysenter_test:
        mov dword [v_scratch + 0x20], 0
        RING3 r3_sysenter, [v_scratch + 0x90]
        P32 "sysenter.cs", dword [v_scratch + 0x20]
        P32 "sysenter.ss", dword [v_scratch + 0x24]
        P32 "sysenter.esp", dword [v_scratch + 0x28]
        P32 "sysenter.eflags", dword [v_scratch + 0x2C]
        P32 "sysexit.cs", dword [R3_EAX]
        P32 "sysexit.ss", dword [R3_EBX]
        P32 "sysexit.esp", dword [R3_ECX]
        P32 "sysexit.edx", dword [R3_EDX]
        P32 "sysexit.eflags", dword [R3_EFL]
        ret

print_r3:
        P32 "cs", dword [R3_ESI]
        P32 "ss", dword [R3_EDI]
        P32 "esp", dword [R3_EBX]
        P32 "ds", dword [R3_EAX]
        P32 "es", dword [R3_ECX]
        ret

; 32-bit helpers
f32_ret:                                ; called far from 32-bit code
        mov eax, cs
        retf

sysenter_entry:
        push eax
        mov eax, cs
        mov [v_scratch + 0x20], eax
        mov eax, ss
        mov [v_scratch + 0x24], eax
        lea eax, [esp + 4]
        mov [v_scratch + 0x28], eax
        pushfd
        pop eax
        mov [v_scratch + 0x2C], eax
        pop eax
        mov edx, r3_after_sysexit
        mov ecx, USER_STACK - 0x40
        sti
        sysexit

; ring-3 snippets
r3_regs:
        mov eax, ds
        mov ecx, es
        mov esi, cs
        mov edi, ss
        mov ebx, esp
        int 0x80

r3_retf_inner:
        push dword SEL_CODE0
        push dword 0
        retf

r3_far_ldt:
        call LDT_CODE3:.in_ldt
        mov ebx, cs
        int 0x80
.in_ldt:
        mov eax, cs
        mov ecx, [esp + 4]
        retf

r3_call_ring0:
        call SEL_CODE0:f32_ret
        int 0x80

r3_jmp_conform:
        jmp SEL_CONFORM:.in
.in:    mov eax, cs
        jmp SEL_CODE3:.out
.out:   int 0x80

r3_sysenter:
        mov edx, 0x5A5A5A5A
        sysenter
r3_after_sysexit:
        mov eax, cs
        mov ebx, ss
        mov ecx, esp
        int 0x80

r3_sysexit:
        mov edx, r3_after_sysexit
        mov ecx, USER_STACK
        sysexit
        int 0x80

; 16-bit code (segment 0x30, base 0)
        bits 16
c16_jmp:
        xor eax, eax
        mov ax, cs
        mov ecx, esp
        push ax                         ; 16-bit default operand size: 2 bytes
        pop dx
        push dword 0                    ; kept: 4 bytes
        pop edx
        mov ecx, 0x16
        push ax
        jmp dword SEL_CODE0:probe_main.back_jmp     ; leaves 2 bytes pushed

c16_callee32:                           ; called by a 32-bit far call: 32-bit frame
        xor eax, eax
        mov ax, cs
        mov ecx, [esp + 4]
        mov edx, [esp]
        o32 retf

c16_callee16:                           ; called by a 16-bit far call
        xor eax, eax
        mov ax, cs
        retf

c16_caller:
        call SEL_CODE16:c16_probe_frame   ; 16-bit far call: 4 bytes (CS:IP)
        mov ebp, eax
        call dword SEL_CODE0:f32_frame    ; 32-bit far call from 16-bit code: 8 bytes
        mov eax, ebp
        jmp dword SEL_CODE0:probe_main.back_caller
c16_probe_frame:
        movzx eax, word [esp + 2]       ; the CS pushed
        shl eax, 16
        mov ax, [esp]                   ; the IP pushed
        retf
        bits 32
f32_frame:
        mov ecx, cs
        mov edx, [esp]
        mov esi, [esp + 4]
        retf

%include "end.inc"
