; v86 - V8086 mode entered by iret from ring 0 with IOPL 0 and IOPL 3:
; int n (IOPL 0: #GP(0) with the V86 frame on the ring-0 stack; IOPL 3:
; through the IDT), pushf/popf/cli/sti/iret/hlt, I/O against the bitmap,
; segment arithmetic, exceptions raised in V86.
%define PROBE_NAME "v86"
%include "boot.inc"

; PV86 prefix -- print the V86 frame of the last exception
%macro PEXC86 0
        P32 "  eip", dword [v_exc_frame]
        P32 "  cs", dword [v_exc_frame + 4]
        P32 "  eflags", dword [v_exc_frame + 8]
        P32 "  esp", dword [v_exc_frame + 12]
        P32 "  ss", dword [v_exc_frame + 16]
        P32 "  es", dword [v_exc_frame + 20]
        P32 "  ds", dword [v_exc_frame + 24]
        P32 "  fs", dword [v_exc_frame + 28]
        P32 "  gs", dword [v_exc_frame + 32]
%endmacro
%macro PINT80 0
        P32 "  eip", dword [v_r3_frame]
        P32 "  cs", dword [v_r3_frame + 4]
        P32 "  eflags", dword [v_r3_frame + 8]
        P32 "  esp", dword [v_r3_frame + 12]
        P32 "  ss", dword [v_r3_frame + 16]
        P32 "  es", dword [v_r3_frame + 20]
        P32 "  ds", dword [v_r3_frame + 24]
        P32 "  fs", dword [v_r3_frame + 28]
        P32 "  gs", dword [v_r3_frame + 32]
        P32 "  eax", dword [R3_EAX]
        P32 "  ebx", dword [R3_EBX]
        P32 "  ecx", dword [R3_ECX]
        P32 "  edx", dword [R3_EDX]
        P32 "  esi", dword [R3_ESI]
        P32 "  edi", dword [R3_EDI]
%endmacro

probe_main:
        mov dword [0x12340], 0x12341234
        mov dword [0x23450], 0x23452345
        ; ---- IOPL 0
        PUTS "== v86 iopl0: int 0x80", 10
        V86 v86_int80, 0x0202
        PEXC86
        PUTS "== v86 iopl0: int3", 10
        V86 v86_int3, 0x0202
        PUTS "== v86 iopl0: into (OF=1)", 10
        V86 v86_into, 0x0A02
        PUTS "== v86 iopl0: pushf", 10
        V86 v86_pushf, 0x0202
        PUTS "== v86 iopl0: popf", 10
        V86 v86_popf, 0x0202
        PUTS "== v86 iopl0: cli", 10
        V86 v86_cli, 0x0202
        PUTS "== v86 iopl0: sti", 10
        V86 v86_sti, 0x0202
        PUTS "== v86 iopl0: iret", 10
        V86 v86_iret, 0x0202
        PUTS "== v86 iopl0: hlt", 10
        V86 v86_hlt, 0x0202
        PUTS "== v86 iopl0: ud2", 10
        V86 v86_ud2, 0x0202
        PEXC86
        PUTS "== v86 iopl0: div 0", 10
        V86 v86_div0, 0x0202
        PUTS "== v86 iopl0: mov eax, cr0", 10
        V86 v86_cr0, 0x0202
        PUTS "== v86 iopl0: lar", 10
        V86 v86_lar, 0x0202
        ; ---- IOPL 3
        PUTS "== v86 iopl3: int 0x80", 10
        V86 v86_regs, 0x3202
        PINT80
        PUTS "== v86 iopl3: flags", 10
        V86 v86_flags, 0x3202
        PINT80
        PUTS "== v86 iopl3: int 0x81 (trap gate, back to v86)", 10
        mov dword [v_rec_count], 0
        V86 v86_int81, 0x3202
        P32 "  rec.eip", dword [v_rec_frame]
        P32 "  rec.cs", dword [v_rec_frame + 4]
        P32 "  rec.eflags", dword [v_rec_frame + 8]
        P32 "  rec.inside", dword [v_rec_flags]
        P32 "  rec.count", dword [v_rec_count]
        P32 "  after.eax", dword [R3_EAX]
        PUTS "== v86 iopl3: int3", 10
        V86 v86_int3, 0x3202
        PEXC86
        PUTS "== v86 iopl3: iret (16-bit, stays in v86)", 10
        V86 v86_iret, 0x3202
        PINT80
        PUTS "== v86 iopl3: hlt", 10
        V86 v86_hlt, 0x3202
        PUTS "== v86 iopl3: segments", 10
        V86 v86_segs, 0x3202
        PINT80
        PUTS "== v86 iopl3: allowed I/O", 10
        V86 v86_io_ok, 0x3202
        mov al, 10
        call putc
        PINT80
        ; ---- I/O in V86 that the bitmap denies
        PUTS "== v86 iopl0: in al, 0x71 (denied by the bitmap)", 10
        V86 v86_io_denied, 0x0202
        PUTS "== v86 iopl3: in al, 0x71 (denied by the bitmap)", 10
        V86 v86_io_denied, 0x3202
        ; ---- int n through a DPL 0 gate at IOPL 3: #GP(0x412) (last: hybrid86 stops the VM)
        PUTS "== v86 iopl3: int 0x82 (DPL 0 gate)", 10
        V86 v86_int82, 0x3202
        ret

        bits 16
v86_int80:
        mov ax, 0x8080
        int 0x80
v86_int3:
        int3
        int 0x80
v86_into:
        into
        int 0x80
v86_pushf:
        pushf
        int 0x80
v86_popf:
        push word 0x0202
        popf
        int 0x80
v86_cli:
        cli
        int 0x80
v86_sti:
        sti
        int 0x80
v86_iret:
        pushf
        push cs
        push word .after
        iret
.after: mov ax, 0x1111
        int 0x80
v86_hlt:
        hlt
        int 0x80
v86_ud2:
        mov ax, 0xDDDD
        ud2
v86_div0:
        xor ax, ax
        xor dx, dx
        div ax
v86_cr0:
        mov eax, cr0
        int 0x80
v86_lar:
        mov ax, 0x10
        lar bx, ax
        int 0x80
v86_regs:
        mov eax, 0xFFFFFFFF
        mov ebx, eax
        mov ecx, eax
        mov edx, eax
        mov ax, cs
        mov bx, ss
        mov cx, sp
        mov dx, es
        mov esi, 0x51515151
        mov edi, 0x0D1D1D1D
        int 0x80
v86_flags:
        pushf
        pop ax                          ; initial
        cli
        pushf
        pop bx                          ; IF cleared
        sti
        push word 0x7ED5                ; IOPL 0 NT? status flags; IOPL and NT bits set in the image
        popf
        pushf
        pop cx                          ; IOPL unchanged by popf in V86
        push dword 0x00240202           ; AC, ID
        popfd
        pushfd
        pop edx
        push word 0x0202
        popf
        mov esi, esp
        int 0x80
v86_int81:
        mov ax, 0x8181
        int 0x81
        mov ax, 0x8182
        int 0x80
v86_int82:
        int 0x82
        int 0x80
v86_segs:
        mov ax, 0x1234
        mov ds, ax
        mov eax, [0]                    ; linear 0x12340
        mov bx, 0x2345
        mov es, bx
        mov ebx, [es:0]                 ; linear 0x23450
        mov cx, ds
        mov dx, es
        push word 0x1234
        pop fs
        mov esi, [fs:0]
        mov di, fs
        int 0x80
v86_io_ok:
        mov al, 'V'
        out 0xE9, al
        xor eax, eax
        in al, 0xE9
        out 0x80, al
        int 0x80
v86_io_denied:
        in al, 0x71
        int 0x80
        bits 32

%include "end.inc"
