; io_string - string I/O (outsb/insb, rep) at ring 0 and ring 3, against
; IOPL and the TSS I/O permission bitmap (ports 0x80 and 0xE9 allowed).
%define PROBE_NAME "io_string"
%include "boot.inc"

probe_main:
        ; ---- ring 0
        mov esi, msg0
        mov ecx, msg0_len
        mov dx, 0xE9
        rep outsb
        mov edi, v_scratch
        mov dword [edi], 0
        mov ecx, 3
        rep insb
        P32 "r0.insb", dword [v_scratch]
        P32 "r0.insb.edi", edi
        ; ---- ring 3, IOPL 0, IF=1 (hybrid86: direct execution)
        mov dword [v_scratch + 0x90], 0x0202
        PUTS "== ring 3, IOPL 0, IF 1", 10
        call tests
        ; ---- ring 3, IOPL 3 (hybrid86: binary translation)
        mov dword [v_scratch + 0x90], 0x3202
        PUTS "== ring 3, IOPL 3", 10
        call tests
        ; ---- ring 3, IOPL 0, IF=0 (hybrid86: binary translation)
        mov dword [v_scratch + 0x90], 0x0002
        PUTS "== ring 3, IOPL 0, IF 0", 10
        call tests
        ret

tests:
        mov dword [R3_EAX], 0xEEEEEEEE
        RING3 r3_outs, [v_scratch + 0x90]
        mov al, 10
        call putc
        P32 "outsb.esi", dword [R3_ESI]
        P32 "outsb.ecx", dword [R3_ECX]
        mov dword [R3_EAX], 0xEEEEEEEE
        RING3 r3_ins, [v_scratch + 0x90]
        P32 "insb.data", dword [USER_DATA]
        P32 "insb.edi", dword [R3_EDI]
        mov dword [R3_ECX], 0xEEEEEEEE
        RING3 r3_outs_denied, [v_scratch + 0x90]
        P32 "outsb.71.ecx", dword [R3_ECX]
        ret

msg0:   db "ring0 outsb", 10
msg0_len equ $ - msg0
msg3:   db "ring3 outsb"
msg3_len equ $ - msg3

r3_outs:
        mov esi, msg3
        mov ecx, msg3_len
        mov dx, 0xE9
        rep outsb
        int 0x80
r3_ins:
        mov edi, USER_DATA
        mov dword [edi], 0
        mov ecx, 2
        mov dx, 0xE9
        rep insb
        int 0x80
r3_outs_denied:
        mov esi, msg3
        mov ecx, 2
        mov dx, 0x71
        rep outsb
        int 0x80

%include "end.inc"
