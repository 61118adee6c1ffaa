; segments - segment-register loads and stores, their faults, and
; lsl/lar/verr/verw over a set of selectors, at ring 0 and at ring 3.
%define PROBE_NAME "segments"
%include "boot.inc"

; LOAD sreg, selector -- mov sreg, selector (may fault), then print the register
%macro LOAD 3
        mov ax, %2
        TRY mov %1, ax
        mov ebx, 0xFFFFFFFF
        mov ebx, %1
        mov ax, SEL_DATA0
        mov %1, ax
        P32 %3, ebx
%endmacro

probe_main:
        ; ---- valid loads with mov
        LOAD ds, SEL_DATA3, "mov.ds.23"
        LOAD es, SEL_DATA16, "mov.es.38"
        LOAD fs, SEL_SMALL, "mov.fs.40"
        LOAD gs, LDT_DATA3, "mov.gs.07"
        LOAD ds, SEL_CODE0, "mov.ds.08"             ; readable code
        LOAD es, SEL_CONFORM, "mov.es.68"           ; conforming readable code
        LOAD fs, SEL_RODATA3, "mov.fs.73"           ; read-only data
        LOAD gs, SEL_EXPDOWN, "mov.gs.48"
        LOAD ds, 0, "mov.ds.null"
        LOAD es, 3, "mov.es.null3"
        ; ---- faulting loads: beyond the GDT limit, not present, execute-only code,
        ; system descriptors, the TSS, LDT index beyond the LDT's limit
        LOAD ds, 0x98, "mov.ds.98"
        LOAD ds, 0xFF10, "mov.ds.ff10"
        LOAD ds, SEL_NOTPRESENT, "mov.ds.50"
        LOAD es, SEL_XONLY, "mov.es.60"
        LOAD fs, SEL_TSS, "mov.fs.28"
        LOAD gs, SEL_LDT, "mov.gs.58"
        LOAD ds, SEL_CALLGATE, "mov.ds.78"
        LOAD ds, 0x1C, "mov.ds.1c"                  ; LDT index 3: beyond the LDT
        LOAD ds, SEL_MONREGION, "mov.ds.90"         ; data in the top 4 MiB (DPL 3)
        ; ---- SS
        LOAD ss, 0x13, "mov.ss.13"                  ; RPL 3 != CPL
        LOAD ss, SEL_DATA3, "mov.ss.23"             ; DPL 3 != CPL
        LOAD ss, SEL_CODE0, "mov.ss.08"             ; code
        LOAD ss, SEL_RODATA3 & 0xFFFC, "mov.ss.70"  ; read-only, DPL 3
        LOAD ss, 0, "mov.ss.null"
        LOAD ss, SEL_NOTPRESENT, "mov.ss.50"        ; #SS
        LOAD ss, LDT_DATA0, "mov.ss.14"

        ; ---- a 16-bit stack segment: push uses SP, ESP's top half stays
        mov [v_scratch + 0x30], esp
        mov dword [0x5EFC], 0
        mov esp, 0x12345F00
        mov ax, SEL_DATA16
        mov ss, ax
        push dword 0xCAFEBABE
        mov ebx, esp
        mov ax, SEL_DATA0
        mov ss, ax
        mov esp, [v_scratch + 0x30]
        P32 "ss16.esp", ebx
        P32 "ss16.mem", dword [0x5EFC]

        ; ---- the hidden parts: reads through segments with a base, at a limit
        mov dword [SMALL_BASE + 0x10], 0x11223344
        mov dword [SMALL_BASE + 0xFC], 0x55667788
        mov ax, SEL_SMALL
        mov fs, ax
        mov eax, [fs:0x10]
        P32 "small.10", eax
        mov eax, [fs:0xFC]
        P32 "small.fc", eax
        ; (QEMU's TCG, like Unicorn, checks neither data-segment limits nor
        ; read-only/code/null on data accesses: these lines record that)
        TRY mov eax, [fs:0xFD]                      ; crosses the limit: #GP(0)
        mov ax, SEL_SMALL
        mov fs, ax
        TRY mov eax, [fs:0x100]                     ; beyond the limit: #GP(0)
        mov ax, SEL_EXPDOWN
        mov gs, ax
        mov dword [0x2000], 0x99AABBCC
        mov eax, [gs:0x2000]
        P32 "expdown.2000", eax
        TRY mov eax, [gs:0x800]                     ; below limit+1: #GP(0)
        mov ax, LDT_DATA3
        mov es, ax
        mov eax, [es:0x10]
        P32 "ldt07.10", eax
        mov ax, SEL_RODATA3
        mov es, ax
        TRY mov dword [es:0x2000], 1                ; write to read-only: #GP(0)
        mov ax, SEL_CODE0
        mov es, ax
        mov eax, [es:0x2000]
        P32 "code08.read", eax
        TRY mov dword [es:0x2000], 1                ; write to code: #GP(0)
        xor eax, eax
        mov es, ax
        TRY mov eax, [es:0x2000]                    ; through a null selector: #GP(0)
        mov ax, SEL_DATA0
        mov es, ax
        mov fs, ax
        mov gs, ax

        ; ---- pop sreg
        push dword SEL_DATA3
        pop ds
        mov eax, ds
        P32 "pop.ds.23", eax
        push dword LDT_DATA3
        pop es
        mov eax, es
        P32 "pop.es.07", eax
        push dword 0x98
        mov [v_scratch], esp
        TRY pop fs                                  ; #GP(0x98), ESP unchanged
        mov eax, esp
        sub eax, [v_scratch]
        P32 "pop.fs.98.esp_delta", eax
        add esp, 4
        o16 push word SEL_SMALL
        o16 pop gs
        mov eax, gs
        P32 "o16pop.gs.40", eax
        push dword SEL_DATA0
        pop ss
        mov eax, ss
        P32 "pop.ss.10", eax
        mov ax, SEL_DATA0
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax

        ; ---- mov r/m, sreg and push sreg
        mov ax, SEL_SMALL
        mov fs, ax
        mov eax, 0xFFFFFFFF
        mov eax, fs
        P32 "mov.r32.fs", eax
        mov eax, 0xFFFFFFFF
        mov ax, fs
        P32 "mov.r16.fs", eax
        mov dword [v_scratch], 0xFFFFFFFF
        mov [v_scratch], fs
        P32 "mov.m16.fs", dword [v_scratch]
        mov dword [v_scratch], 0xFFFFFFFF
        o32 mov [v_scratch], fs
        P32 "o32mov.m.fs", dword [v_scratch]
        mov eax, 0xFFFFFFFF
        mov eax, cs
        P32 "mov.r32.cs", eax
        mov eax, ss
        P32 "mov.r32.ss", eax
        mov ebx, esp
        push dword 0xFFFFFFFF
        pop eax
        push fs
        mov ecx, esp
        pop eax
        sub ebx, ecx
        and eax, 0xFFFF                 ; the top half of the slot: written on some CPUs, not on others
        P32 "push32.fs.value.low", eax
        P32 "push32.fs.delta", ebx
        mov ebx, esp
        push dword 0xFFFFFFFF
        pop eax
        o16 push fs
        mov ecx, esp
        o16 pop ax
        sub ebx, ecx
        P32 "push16.fs.value", eax
        P32 "push16.fs.delta", ebx
        mov ebx, esp
        push dword 0xFFFFFFFF
        pop eax
        push cs
        mov ecx, esp
        pop eax
        sub ebx, ecx
        and eax, 0xFFFF                 ; the top half of the slot: written on some CPUs, not on others
        P32 "push32.cs.value.low", eax
        P32 "push32.cs.delta", ebx
        push ss
        pop eax
        and eax, 0xFFFF
        P32 "push32.ss.value.low", eax
        mov ax, SEL_DATA0
        mov fs, ax

        ; ---- lds les lfs lgs lss
        mov dword [v_scratch], 0x12345678
        mov word [v_scratch + 4], SEL_DATA3
        mov word [v_scratch + 8], 0x4321
        mov word [v_scratch + 10], SEL_SMALL
        mov ebx, 0xFFFFFFFF
        les ebx, [v_scratch]
        mov eax, es
        P32 "les.ebx", ebx
        P32 "les.es", eax
        mov ebx, 0xFFFFFFFF
        lfs ebx, [v_scratch]
        mov eax, fs
        P32 "lfs.ebx", ebx
        P32 "lfs.fs", eax
        mov ebx, 0xFFFFFFFF
        o16 lgs bx, [v_scratch + 8]
        mov eax, gs
        P32 "o16lgs.ebx", ebx
        P32 "o16lgs.gs", eax
        mov ebx, 0xFFFFFFFF
        lds ebx, [v_scratch]                    ; DS = 0x23 (the next load uses it)
        mov eax, ds
        P32 "lds.ebx", ebx
        P32 "lds.ds", eax
        mov ax, SEL_DATA0
        mov ds, ax
        mov word [v_scratch + 4], SEL_NOTPRESENT
        mov ebx, 0xFFFFFFFF
        TRY lds ebx, [v_scratch]                ; #NP(0x50): EBX unchanged
        P32 "lds.50.ebx", ebx
        ; lss: switch to another stack and back
        mov [v_scratch + 0x20], esp
        mov word [v_scratch + 0x24], SEL_DATA0
        mov dword [v_scratch + 0x28], 0x8F000
        mov word [v_scratch + 0x2C], LDT_DATA0
        lss esp, [v_scratch + 0x28]
        mov eax, esp
        mov ebx, ss
        lss esp, [v_scratch + 0x20]
        P32 "lss.esp", eax
        P32 "lss.ss", ebx
        mov word [v_scratch + 0x2C], SEL_DATA3
        mov ebx, esp
        TRY lss esp, [v_scratch + 0x28]         ; #GP(0x20)
        sub ebx, esp
        P32 "lss.23.esp_delta", ebx

        ; ---- lsl lar verr verw at ring 0
        mov byte [v_scratch + 0x80], 0
        call lsl_table
        PUTS "ring0 table", 10
        call print_table
        ; ---- ... and at ring 3 (IOPL 0, IF=1), at ring 3 with IOPL 3
        RING3 r3_table, 0x00000202
        PUTS "ring3 iopl0 table", 10
        call print_table
        RING3 r3_table, 0x00003202
        PUTS "ring3 iopl3 table", 10
        call print_table

        ; ---- segment loads at ring 3
        RING3 r3_loads, 0x00000202
        PUTS "ring3 loads", 10
        P32 "r3.ds", dword [R3_EAX]
        P32 "r3.es", dword [R3_EBX]
        P32 "r3.fs", dword [R3_ECX]
        P32 "r3.gs", dword [R3_EDX]
        RING3 r3_load_bad, 0x00000202, SEL_DATA3
        P32 "r3.ds.10.count", dword [USER_DATA + 0x100]
        mov dword [v_scratch + 0x40], SEL_DATA0 ; DPL 0 data: #GP(0x10)
        RING3 r3_load_sel, 0x00000202
        mov dword [v_scratch + 0x40], 0x0FFB    ; beyond the GDT: #GP(0xff8)
        RING3 r3_load_sel, 0x00000202
        mov dword [v_scratch + 0x40], 0xFF13    ; far beyond: #GP(0xff10)
        RING3 r3_load_sel, 0x00000202
        mov dword [v_scratch + 0x40], SEL_NOTPRESENT | 3      ; DPL 0 and P=0: #GP(0x50)
        RING3 r3_load_sel, 0x00000202
        mov dword [v_scratch + 0x40], SEL_MONREGION | 3       ; DPL 3 data in the top 4 MiB: loads
        RING3 r3_load_sel, 0x00000202
        P32 "r3.monregion.ds", dword [R3_EAX]
        mov dword [v_scratch + 0x40], SEL_CONFORM | 3         ; conforming code, DPL 0: loads
        RING3 r3_load_sel, 0x00000202
        P32 "r3.conform.ds", dword [R3_EAX]
        mov dword [v_scratch + 0x40], SEL_CODE3               ; ring-3 code (readable): loads
        RING3 r3_load_sel, 0x00000202
        P32 "r3.code3.ds", dword [R3_EAX]
        mov dword [v_scratch + 0x40], LDT_DATA0 | 3           ; LDT DPL 0: #GP(0x14)
        RING3 r3_load_sel, 0x00000202
        mov dword [v_scratch + 0x40], SEL_DATA0               ; SS with DPL 0: #GP(0x10)
        RING3 r3_load_ss, 0x00000202
        mov dword [v_scratch + 0x40], LDT_DATA3               ; SS from the LDT, DPL 3: loads
        RING3 r3_load_ss, 0x00000202
        P32 "r3.ss.07", dword [R3_EAX]
        ret

; The selectors the table instructions are tried on.
sel_list:
        dw 0x0000, 0x0003, 0x0008, 0x0010, 0x001B, 0x0023, 0x0028, 0x0030, 0x0038, 0x0040
        dw 0x0048, 0x0050, 0x0058, 0x0060, 0x0068, 0x0073, 0x0078, 0x0080, 0x0088, 0x0093
        dw 0x0098, 0x00FB, 0xFF08, 0x0007, 0x000F, 0x0014, 0x001C, 0x0013, 0x0011
sel_count equ ($ - sel_list) / 2

; lsl_table: for each selector, 5 dwords at USER_DATA + 20*i:
;   flags (bit 0 lsl ZF, bit 1 lar ZF, bit 2 verr ZF, bit 3 verw ZF), lsl value,
;   lar value, lsl16 value (16-bit operand), lar16 value.  Runs at any CPL.
lsl_table:
r3_table_body:
        xor esi, esi
.next:
        cmp esi, sel_count
        jae .done
        movzx ecx, word [sel_list + 2 * esi]
        imul edi, esi, 20
        add edi, USER_DATA
        xor edx, edx
        mov eax, 0xDEADBEEF
        lsl eax, ecx
        jnz .1
        or edx, 1
.1:     mov [edi + 4], eax
        mov eax, 0xDEADBEEF
        lar eax, ecx
        jnz .2
        or edx, 2
.2:     mov [edi + 8], eax
        verr cx
        jnz .3
        or edx, 4
.3:     verw cx
        jnz .4
        or edx, 8
.4:     mov eax, 0xDEADBEEF
        lsl ax, cx
        mov [edi + 12], eax
        mov eax, 0xDEADBEEF
        lar ax, cx
        mov [edi + 16], eax
        mov [edi], edx
        inc esi
        jmp .next
.done:
        ret

r3_table:
        call r3_table_body
        int 0x80

print_table:
        xor esi, esi
.next:
        cmp esi, sel_count
        jae .done
        imul edi, esi, 20
        add edi, USER_DATA
        PUTS "sel "
        movzx eax, word [sel_list + 2 * esi]
        mov cl, 4
        call print_hexn
        PUTS " zf(lsl,lar,verr,verw)="
        mov eax, [edi]
        mov cl, 1
        call print_hexn
        PUTS " lsl="
        mov eax, [edi + 4]
        mov cl, 8
        call print_hexn
        PUTS " lar="
        mov eax, [edi + 8]
        mov cl, 8
        call print_hexn
        PUTS " lsl16="
        mov eax, [edi + 12]
        mov cl, 8
        call print_hexn
        PUTS " lar16="
        mov eax, [edi + 16]
        mov cl, 8
        call print_hexn
        mov al, 10
        call putc
        inc esi
        jmp .next
.done:
        ret

r3_loads:
        mov ax, LDT_DATA3
        mov ds, ax
        mov ax, SEL_RODATA3
        mov es, ax
        push dword SEL_DATA3
        pop fs
        xor eax, eax
        mov gs, ax
        mov eax, ds
        mov ebx, es
        mov ecx, fs
        mov edx, gs
        int 0x80

r3_load_bad:
        mov dword [USER_DATA + 0x100], 0
        mov ax, SEL_DATA0
        mov ds, ax                              ; #GP(0x10)
        inc dword [USER_DATA + 0x100]
        int 0x80

r3_load_sel:
        mov eax, [v_scratch + 0x40]
        mov ds, ax
        mov eax, ds
        int 0x80

r3_load_ss:
        mov eax, [v_scratch + 0x40]
        mov ss, ax
        mov eax, ss
        int 0x80

%include "end.inc"
