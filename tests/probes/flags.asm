; flags - pushf/popf/iret at ring 0 and ring 3 with IOPL 0 and 3: which
; changes of IF, IOPL and the other system flags stick; cli/sti at ring 3.
%define PROBE_NAME "flags"
%include "boot.inc"

ALL_FLAGS equ 0x003F3ED7        ; everything but TF and NT (and the reserved bits)
IRET_FLAGS equ ALL_FLAGS & ~0x20000     ; and VM (iret at CPL 0 would enter V8086)

probe_main:
        ; ---- ring 0
        push dword 2
        popfd
        pushfd
        pop eax
        P32 "r0.start", eax
        push dword ALL_FLAGS
        popfd
        pushfd
        pop ebx
        push dword 2
        popfd
        P32 "r0.popfd.all", ebx
        push dword 0x3000
        popfd
        mov ax, 0xBEFF
        push ax
        popfw                           ; 16-bit: the top half stays
        pushfd
        pop ebx
        push dword 2
        popfd
        P32 "r0.popf16", ebx
        ; iretd at ring 0 (same level) loads IF, IOPL, DF, AC, ID
        push dword IRET_FLAGS
        push cs
        push dword .after_iret
        iretd
.after_iret:
        pushfd
        pop ebx
        push dword 2
        popfd
        P32 "r0.iretd", ebx

        ; ---- ring 3
        RING3 r3_popf, 0x00000202               ; IOPL 0, IF 1
        PUTS "r3 iopl0 if1", 10
        call print_popf
        RING3 r3_popf, 0x00000002               ; IOPL 0, IF 0
        PUTS "r3 iopl0 if0", 10
        call print_popf
        RING3 r3_popf, 0x00003202               ; IOPL 3, IF 1
        PUTS "r3 iopl3 if1", 10
        call print_popf
        RING3 r3_popf, 0x00003002               ; IOPL 3, IF 0
        PUTS "r3 iopl3 if0", 10
        call print_popf
        RING3 r3_popf, 0x00001202               ; IOPL 1, IF 1
        PUTS "r3 iopl1 if1", 10
        call print_popf

        ; cli / sti
        PUTS "cli/sti iopl0", 10
        RING3 r3_cli, 0x00000202
        RING3 r3_sti, 0x00000202
        RING3 r3_sti, 0x00000002
        PUTS "cli/sti iopl3", 10
        RING3 r3_clisti, 0x00003202
        P32 "r3.cli.flags", dword [R3_EAX]
        P32 "r3.sti.flags", dword [R3_EBX]
        P32 "r3.int80.eflags", dword [R3_EFL]
        RING3 r3_cli_end, 0x00003202
        P32 "r3.cli_end.eflags", dword [R3_EFL]
        ret

print_popf:
        P32 "pushfd", dword [R3_EAX]
        P32 "popfd.all", dword [R3_EBX]
        P32 "popfd.zero", dword [R3_ECX]
        P32 "popf16.all", dword [R3_EDX]
        P32 "iretd.all", dword [R3_ESI]
        P32 "iretd.zero", dword [R3_EDI]
        P32 "int80.eflags", dword [R3_EFL]
        ret

r3_popf:
        pushfd
        pop eax
        push dword ALL_FLAGS
        popfd
        pushfd
        pop ebx
        push dword 0
        popfd
        pushfd
        pop ecx
        o16 push word 0xBEFF
        popfw
        pushfd
        pop edx
        ; iretd to the same level
        push dword IRET_FLAGS
        push cs
        push dword .a
        iretd
.a:     pushfd
        pop esi
        push dword 0
        push cs
        push dword .b
        iretd
.b:     pushfd
        pop edi
        cld
        int 0x80

r3_cli:
        cli
        int 0x80
r3_sti:
        sti
        int 0x80
r3_clisti:
        cli
        pushfd
        pop eax
        sti
        pushfd
        pop ebx
        cli
        int 0x80
r3_cli_end:
        cli
        int 0x80

%include "end.inc"
