; io - in/out at ring 0, and at ring 3 against IOPL and the TSS I/O
; permission bitmap (ports 0x80 and 0xE9 allowed, the rest of 0x00-0xFF
; denied, everything above beyond the map).  Port 0xE9 reads back 0xE9 and
; prints what is written to it, so ring-3 writes show up in the output.
%define PROBE_NAME "io"
%include "boot.inc"

; IOTEST snippet, eflags, label -- run one ring-3 snippet, print a newline after
; whatever it printed, then its EAX at int 0x80 (0xEEEEEEEE when it faulted)
%macro IOTEST 3
        mov dword [R3_EAX], 0xEEEEEEEE  ; what is printed when the snippet faults
        RING3 %1, %2
        mov al, 10
        call putc
        P32 %3, dword [R3_EAX]
%endmacro

probe_main:
        ; ---- ring 0
        xor eax, eax
        in al, 0xE9
        P32 "r0.in8.e9", eax
        mov dx, 0xE9
        xor eax, eax
        in al, dx
        P32 "r0.in8.dx.e9", eax
        out 0x80, al
        mov al, '0'
        out 0xE9, al
        mov al, 10
        out 0xE9, al

        ; ---- ring 3, IOPL 3: everything allowed
        mov dword [v_scratch + 0x90], 0x3202
        PUTS "== ring 3, IOPL 3", 10
        call allowed
        IOTEST r3_in71, 0x3202, "iopl3.in71.done"
        IOTEST r3_out70, 0x3202, "iopl3.out70.done"
        IOTEST r3_in16_e9, 0x3202, "iopl3.in16.e9.done"

        ; ---- ring 3, IOPL 0, IF=0 (hybrid86: binary translation)
        mov dword [v_scratch + 0x90], 0x0002
        PUTS "== ring 3, IOPL 0, IF 0", 10
        call allowed
        call denied

        ; ---- ring 3, IOPL 0, IF=1 (hybrid86: direct execution)
        mov dword [v_scratch + 0x90], 0x0202
        PUTS "== ring 3, IOPL 0, IF 1", 10
        call allowed
        call denied                     ; last: hybrid86 stops the VM here (U7)
        ret

allowed:
        IOTEST r3_out_e9, [v_scratch + 0x90], "out.e9.done"
        IOTEST r3_in_e9, [v_scratch + 0x90], "in8.e9"
        IOTEST r3_in_dx_e9, [v_scratch + 0x90], "in8.dx.e9"
        IOTEST r3_out80, [v_scratch + 0x90], "out80.done"
        IOTEST r3_out16_80, [v_scratch + 0x90], "out16.80.denied81"
        ret

denied:
        IOTEST r3_in71, [v_scratch + 0x90], "in71"
        IOTEST r3_out70, [v_scratch + 0x90], "out70"
        IOTEST r3_in16_e9, [v_scratch + 0x90], "in16.e9"
        IOTEST r3_in_e8, [v_scratch + 0x90], "in8.e8"
        IOTEST r3_out_ff, [v_scratch + 0x90], "out.ff"
        IOTEST r3_out_3f8, [v_scratch + 0x90], "out.3f8"
        ret

r3_out_e9:
        mov eax, 0xFFFFFFFF
        mov al, 'A'
        out 0xE9, al
        mov dx, 0xE9
        mov al, 'B'
        out dx, al
        int 0x80
r3_in_e9:
        mov eax, 0xFFFFFFFF
        in al, 0xE9
        int 0x80
r3_in_dx_e9:
        mov eax, 0xFFFFFFFF
        mov dx, 0xE9
        in al, dx
        int 0x80
r3_out80:
        mov eax, 0xFFFFFFFF
        out 0x80, al
        mov dx, 0x80
        out dx, al
        int 0x80
r3_out16_80:                            ; ports 0x80 and 0x81: 0x81 is denied
        mov eax, 0xFFFFFFFF
        out 0x80, ax
        int 0x80
r3_in71:
        mov eax, 0xFFFFFFFF
        in al, 0x71
        mov eax, 0x71
        int 0x80
r3_out70:
        mov eax, 0xFFFFFFFF
        mov al, 0x0F
        out 0x70, al
        mov eax, 0x70
        int 0x80
r3_in16_e9:                             ; ports 0xE9 and 0xEA: 0xEA is denied
        mov eax, 0xFFFFFFFF
        in ax, 0xE9
        mov eax, 0xE9
        int 0x80
r3_in_e8:
        mov eax, 0xFFFFFFFF
        mov dx, 0xE8
        in al, dx
        int 0x80
r3_out_ff:                              ; the last port of the map
        mov eax, 0xFFFFFFFF
        mov dx, 0xFF
        out dx, al
        mov eax, 0xFF
        int 0x80
r3_out_3f8:                             ; beyond the map
        mov eax, 0xFFFFFFFF
        mov dx, 0x3F8
        mov al, 'x'
        out dx, al
        mov eax, 0x3F8
        int 0x80

%include "end.inc"
