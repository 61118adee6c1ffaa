; interrupts - int n through DPL 0 / DPL 3 gates, trap vs interrupt gates,
; int3, into, #UD, #DE, #BR, not-present and non-gate IDT entries, the
; exception frame from ring 0 and from ring 3, iret to ring 3 and back.
%define PROBE_NAME "interrupts"
%include "boot.inc"

; PREC prefix -- print the recorder's frame
%macro PREC 1
        %strcat %%a %1, ".rec.eip"
        %strcat %%b %1, ".rec.cs"
        %strcat %%c %1, ".rec.eflags"
        %strcat %%d %1, ".rec.esp"
        %strcat %%e %1, ".rec.ss"
        %strcat %%f %1, ".rec.inside"
        %strcat %%g %1, ".rec.ds"
        %strcat %%h %1, ".rec.count"
        P32 %%a, dword [v_rec_frame]
        P32 %%b, dword [v_rec_frame + 4]
        P32 %%c, dword [v_rec_frame + 8]
        P32 %%d, dword [v_rec_frame + 12]
        P32 %%e, dword [v_rec_frame + 16]
        P32 %%f, dword [v_rec_flags]
        P32 %%g, dword [v_rec_ds]
        P32 %%h, dword [v_rec_count]
%endmacro

; PEXC prefix -- print the last exception's frame (ring 3 -> ring 0: with ESP and SS)
%macro PEXC 1
        %strcat %%a %1, ".exc.cs"
        %strcat %%b %1, ".exc.eflags"
        %strcat %%c %1, ".exc.esp"
        %strcat %%d %1, ".exc.ss"
        P32 %%a, dword [EX_CS]
        P32 %%b, dword [EX_EFL]
        P32 %%c, dword [EX_ESP]
        P32 %%d, dword [EX_SS]
%endmacro

probe_main:
        ; ---- int n at ring 0: trap gate (IF kept), interrupt gates (IF cleared)
        mov dword [v_rec_count], 0
        sti                             ; IRQs are masked at the PICs
        mov ebx, esp
        int 0x81
        mov ecx, esp
        cli
        PREC "r0.int81"
        sub ebx, ecx
        P32 "r0.int81.esp_delta", ebx
        sti
        int 0x82
        cli
        PREC "r0.int82"
        int 0x83
        PREC "r0.int83"
        ; int to a not-present gate, an empty IDT entry, beyond the IDT limit
        TRY int 0x84
        TRY int 0x90
        lidt [idt_small]
        TRY int 0x40                    ; beyond the limit: #GP(0x202)
        lidt [idt_ptr]
        ; int3 (CC), int 3 (CD 03), into with OF set and clear, int 4
        TRY int3
        TRY int 3
        mov al, 0x7F
        add al, 1                       ; OF=1
        TRY into
        xor eax, eax                    ; OF=0
        TRY into
        PUTS "into.of0.done", 10
        TRY int 4
        ; #UD, #DE, #BR
        TRY ud2
        mov ebx, 0x11111111
        TRY db 0x0F, 0xFF               ; ud0-ish, undefined
        xor edx, edx
        mov eax, 1
        xor ecx, ecx
        TRY div ecx
        mov edx, 0xFFFFFFFF
        mov eax, 0
        mov ecx, 1
        TRY div ecx                     ; quotient too big: #DE
        mov dword [v_scratch], 10
        mov dword [v_scratch + 4], 20
        mov eax, 15
        TRY bound eax, [v_scratch]      ; in range: nothing
        mov eax, 25
        TRY bound eax, [v_scratch]      ; #BR
        mov eax, 5
        TRY o16 bound ax, [v_scratch]   ; 16-bit bounds 10..0 (low words of the dwords): #BR
        ; exception frame at ring 0 (same level): EFLAGS as pushed
        push dword 0x000008D7           ; OF SF ZF AF PF CF
        popfd
        TRY ud2
        PUTS "r0.ud2.frame", 10
        P32 "r0.ud2.cs", dword [EX_CS]
        P32 "r0.ud2.eflags", dword [EX_EFL]
        ; a #GP with an error code at ring 0: the error code and EIP
        mov ax, 0x98
        TRY mov ds, ax
        ; int 0x80 at ring 0 is handled like from ring 3 (resumes)
        mov dword [v_resume_eip], .r0_80
        mov [v_resume_esp], esp
        mov eax, 0xA0A0A0A0
        int 0x80
.r0_80:
        P32 "r0.int80.eax", dword [R3_EAX]
        P32 "r0.int80.cs", dword [R3_CS]

        ; ---- from ring 3, IOPL 3 first (hybrid86: binary translation)
        mov dword [v_scratch + 0x90], 0x3202
        PUTS "== ring 3, IOPL 3", 10
        call ring3_tests
        ; iret to ring 3 with a DPL-0 DS: DS and ES become null, FS stays
        RING3 r3_segs, 0x00000202, SEL_DATA0
        PUTS "r3.after_iret", 10
        P32 "r3.ds", dword [R3_EAX]
        P32 "r3.es", dword [R3_EBX]
        P32 "r3.fs", dword [R3_ECX]
        P32 "r3.gs", dword [R3_EDX]
        P32 "r3.cs", dword [R3_ESI]
        P32 "r3.ss", dword [R3_EDI]
        P32 "r3.int80.ds", dword [v_r3_frame + 24]
        ; the int 0x80 frame
        P32 "r3.int80.eip", dword [R3_EIP]
        P32 "r3.int80.cs", dword [R3_CS]
        P32 "r3.int80.eflags", dword [R3_EFL]
        P32 "r3.int80.esp", dword [R3_ESP]
        P32 "r3.int80.ss", dword [R3_SS]
        ; iret from ring 0 to ring 3 with a 16-bit operand size frame
        mov dword [v_resume_eip], .back16
        mov [v_resume_esp], esp
        push word SEL_DATA3
        push word 0x7000                ; SP
        push word 0x0202
        push word SEL_CODE3
        push word r3_iret16
        o16 iret
.back16:
        PUTS "r3.iret16", 10
        P32 "r3.iret16.esp", dword [R3_ESP]
        P32 "r3.iret16.eax", dword [R3_EAX]
        ; iret from ring 3 to ring 0: #GP(0x08)
        RING3 r3_iret_to_0, 0x00000202
        ; an exception whose handler's stack comes from the TSS: ESP0 seen
        RING3 r3_esp0, 0x00000202
        P32 "r3.esp0", dword [v_scratch + 0x80]
        ; ---- the ring-3 tests again at IOPL 0 with IF=1 (hybrid86: direct execution)
        mov dword [v_scratch + 0x90], 0x0202
        PUTS "== ring 3, IOPL 0", 10
        call ring3_tests
        ret

ring3_tests:
        mov dword [v_rec_count], 0
        RING3 r3_ints, [v_scratch + 0x90]
        PUTS "r3.ints", 10
        P32 "r3.ints.eax", dword [R3_EAX]
        P32 "r3.ints.ebx", dword [R3_EBX]
        PREC "r3.int81"
        RING3 r3_int3, [v_scratch + 0x90] ; DPL 3: #BP
        PEXC "r3.int3"
        RING3 r3_int3cd, [v_scratch + 0x90]
        RING3 r3_into, [v_scratch + 0x90] ; OF=1: #OF
        PEXC "r3.into"
        RING3 r3_ud2, [v_scratch + 0x90]
        PEXC "r3.ud2"
        RING3 r3_de, [v_scratch + 0x90]
        RING3 r3_bound, [v_scratch + 0x90]
        RING3 r3_gp, [v_scratch + 0x90]
        PEXC "r3.hlt"
        RING3 r3_int83_if0, 0x00000002   ; IF=0 at ring 3, then int 0x83
        PREC "r3.int83.if0"
        ; int n that fails its gate checks (last: hybrid86 stops the VM on these in DE)
        RING3 r3_int82, [v_scratch + 0x90] ; DPL 0 gate: #GP(0x412)
        PEXC "r3.int82"
        RING3 r3_int84, [v_scratch + 0x90] ; not present: #NP(0x422)
        RING3 r3_int90, [v_scratch + 0x90] ; empty entry: #GP(0x482)
        RING3 r3_int0d, [v_scratch + 0x90] ; exception vector, DPL 0: #GP(0x6a)
        ret

idt_small:
        dw 0x40 * 8 - 1
        dd ABS(idt)
        dw 0

r3_ints:
        mov eax, 0x11
        int 0x81                        ; DPL 3 trap gate: recorded, back here
        mov ebx, 0x22
        int 0x80

r3_int82:
        mov dword [USER_DATA], 0x82
        int 0x82
        int 0x80
r3_int84:
        int 0x84
        int 0x80
r3_int90:
        int 0x90
        int 0x80
r3_int0d:
        int 0x0D
        int 0x80
r3_int3:
        push dword 0x246
        popfd
        int3
        int 0x80
r3_int3cd:
        int 3
        int 0x80
r3_into:
        mov al, 0x7F
        add al, 1
        into
        int 0x80
r3_ud2:
        ud2
r3_de:
        xor eax, eax
        xor edx, edx
        div eax
r3_bound:
        mov eax, 100
        bound eax, [v_scratch]
r3_gp:
        hlt
r3_int83_if0:
        int 0x83
        int 0x80
r3_segs:
        mov eax, 0xFFFFFFFF
        mov ebx, eax
        mov ecx, eax
        mov edx, eax
        mov esi, eax
        mov edi, eax
        mov eax, ds
        mov ebx, es
        mov ecx, fs
        mov edx, gs
        mov esi, cs
        mov edi, ss
        int 0x80
r3_iret16:
        mov eax, 0x1616
        int 0x80
r3_iret_to_0:
        push dword SEL_DATA0
        push dword 0x8000
        push dword 0x202
        push dword SEL_CODE0
        push dword .x
        iretd
.x:     int 0x80
r3_esp0:
        mov esp, 0x7E000
        int 0x81
        mov eax, [TSS_STACK - 20 + 12]   ; the ESP the recorder's frame carried
        mov [v_scratch + 0x80], eax
        int 0x80

%include "end.inc"
