; descriptor_tables - sgdt sidt sldt str smsw, after lgdt lidt lldt ltr with
; known values, at ring 0 and at ring 3 (IOPL 0 with IF=1, IOPL 3, IF=0).
%define PROBE_NAME "descriptor_tables"
%include "boot.inc"

; FILL: 8 dwords of 0xFFFFFFFF at EDI
%macro FILL 1
        push edi
        push ecx
        push eax
        mov edi, %1
        mov ecx, 8
        mov eax, 0xFFFFFFFF
        rep stosd
        pop eax
        pop ecx
        pop edi
%endmacro

probe_main:
        ; ---- ring 0: the tables the common set-up loaded
        FILL v_scratch
        sgdt [v_scratch]
        sidt [v_scratch + 8]
        P16 "r0.sgdt.limit", dword [v_scratch]
        P32 "r0.sgdt.base", dword [v_scratch + 2]
        P16 "r0.sgdt.after", dword [v_scratch + 6]
        P16 "r0.sidt.limit", dword [v_scratch + 8]
        P32 "r0.sidt.base", dword [v_scratch + 10]
        ; 16-bit operand size (the base's top byte is 0 here)
        FILL v_scratch
        o16 sgdt [v_scratch]
        o16 sidt [v_scratch + 8]
        P16 "r0.o16.sgdt.limit", dword [v_scratch]
        P32 "r0.o16.sgdt.base", dword [v_scratch + 2]
        P16 "r0.o16.sidt.limit", dword [v_scratch + 8]
        P32 "r0.o16.sidt.base", dword [v_scratch + 10]

        ; ---- lgdt / lidt with a base whose top byte is not 0 (nothing uses the
        ; tables meanwhile: no segment load, IF=0, no exception)
        mov word [v_scratch + 0x40], 0x1234
        mov dword [v_scratch + 0x42], 0xAB345678
        lgdt [v_scratch + 0x40]
        lidt [v_scratch + 0x40]
        FILL v_scratch
        sgdt [v_scratch]
        sidt [v_scratch + 8]
        lgdt [gdt_ptr]
        lidt [idt_ptr]
        P16 "hi.sgdt.limit", dword [v_scratch]
        P32 "hi.sgdt.base", dword [v_scratch + 2]
        P32 "hi.sidt.base", dword [v_scratch + 10]
        lgdt [v_scratch + 0x40]
        lidt [v_scratch + 0x40]
        FILL v_scratch
        o16 sgdt [v_scratch]
        o16 sidt [v_scratch + 8]
        lgdt [gdt_ptr]
        lidt [idt_ptr]
        P32 "hi.o16.sgdt.base", dword [v_scratch + 2]
        P32 "hi.o16.sidt.base", dword [v_scratch + 10]
        ; lgdt with a 16-bit operand loads a 24-bit base
        o16 lgdt [v_scratch + 0x40]
        FILL v_scratch
        sgdt [v_scratch]
        lgdt [gdt_ptr]
        P32 "o16.lgdt.base", dword [v_scratch + 2]
        o16 lidt [v_scratch + 0x40]
        FILL v_scratch
        sidt [v_scratch]
        lidt [idt_ptr]
        P32 "o16.lidt.base", dword [v_scratch + 2]

        ; ---- sldt / str to a 32-bit register, a 16-bit register, memory
        mov eax, 0xFFFFFFFF
        sldt eax
        P32 "r0.sldt.r32", eax
        mov eax, 0xFFFFFFFF
        sldt ax
        P32 "r0.sldt.r16", eax
        FILL v_scratch
        sldt [v_scratch]
        P32 "r0.sldt.m16", dword [v_scratch]
        mov eax, 0xFFFFFFFF
        str eax
        P32 "r0.str.r32", eax
        mov eax, 0xFFFFFFFF
        str ax
        P32 "r0.str.r16", eax
        FILL v_scratch
        str [v_scratch]
        P32 "r0.str.m16", dword [v_scratch]

        ; ---- smsw after mov cr0 with known bits (PE MP ET NE)
        mov eax, 0x00000033
        mov cr0, eax
        mov eax, 0xFFFFFFFF
        smsw eax
        and eax, 0xFFFF                 ; bits 31:16 are undefined (SDM; QEMU writes 0, P6 CR0)
        P32 "r0.smsw.r32.low", eax
        mov eax, 0xFFFFFFFF
        smsw ax
        P32 "r0.smsw.r16", eax
        FILL v_scratch
        smsw [v_scratch]
        P32 "r0.smsw.m16", dword [v_scratch]

        ; ---- lldt: null, then a non-LDT selector (#GP), then back
        xor eax, eax
        lldt ax
        mov eax, 0xFFFFFFFF
        sldt eax
        P32 "lldt0.sldt", eax
        mov ax, SEL_NOTPRESENT
        TRY lldt ax
        mov ax, SEL_LDT
        lldt ax
        mov eax, 0xFFFFFFFF
        sldt eax
        P32 "lldt58.sldt", eax
        ; ---- ltr: the busy TSS again (#GP), then the other TSS
        mov ax, SEL_TSS
        TRY ltr ax
        mov ax, SEL_TSS2
        TRY ltr ax
        mov eax, 0xFFFFFFFF
        str eax
        P32 "ltr88.str", eax
        ; the descriptors' access bytes (busy bits)
        P32 "gdt28.hi", dword [ABS(gdt) + 0x28 + 4]
        P32 "gdt88.hi", dword [ABS(gdt) + 0x88 + 4]

        ; ---- ring 3
        RING3 r3_tables, 0x00000202
        PUTS "ring3 iopl0 if1", 10
        call print_r3
        RING3 r3_tables, 0x00003202
        PUTS "ring3 iopl3 if1", 10
        call print_r3
        RING3 r3_tables, 0x00000002
        PUTS "ring3 iopl0 if0", 10
        call print_r3
        ; lgdt / lidt / lldt / ltr at ring 3: #GP(0)
        RING3 r3_lgdt, 0x00000202
        RING3 r3_lidt, 0x00000202
        RING3 r3_lldt, 0x00000202
        RING3 r3_ltr, 0x00000202
        ret

print_r3:
        P16 "sgdt.limit", dword [USER_DATA]
        P32 "sgdt.base", dword [USER_DATA + 2]
        P16 "sidt.limit", dword [USER_DATA + 8]
        P32 "sidt.base", dword [USER_DATA + 10]
        P32 "sldt.r32", dword [USER_DATA + 16]
        P32 "str.r32", dword [USER_DATA + 20]
        P32 "smsw.r32.low", dword [USER_DATA + 24]
        P32 "smsw.m16", dword [USER_DATA + 28]
        P32 "sldt.m16", dword [USER_DATA + 32]
        P32 "str.m16", dword [USER_DATA + 36]
        ret

r3_tables:
        mov edi, USER_DATA
        mov ecx, 16
        mov eax, 0xFFFFFFFF
.fill:  mov [edi + 4 * ecx - 4], eax
        loop .fill
        sgdt [edi]
        sidt [edi + 8]
        mov eax, 0xFFFFFFFF
        sldt eax
        mov [edi + 16], eax
        mov eax, 0xFFFFFFFF
        str eax
        mov [edi + 20], eax
        mov eax, 0xFFFFFFFF
        smsw eax
        and eax, 0xFFFF                 ; bits 31:16 are undefined
        mov [edi + 24], eax
        smsw [edi + 28]
        sldt [edi + 32]
        str [edi + 36]
        int 0x80

r3_lgdt:
        lgdt [gdt_ptr]
        int 0x80
r3_lidt:
        lidt [idt_ptr]
        int 0x80
r3_lldt:
        mov ax, SEL_LDT
        lldt ax
        int 0x80
r3_ltr:
        mov ax, SEL_TSS2
        ltr ax
        int 0x80

%include "end.inc"
