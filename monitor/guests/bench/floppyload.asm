; Boot sector for running a bench image under QEMU (monitor/bench_modes.py):
; move a small loader to 0x600, read NSECT sectors from sector 2 of the boot
; floppy to 0x7C00 (over this sector) and jump to the image there, as if the
; BIOS had loaded it.  DL keeps the BIOS's boot drive.  The 8259s are masked
; first: the ring-3 image runs with IF=1 and its IDT has no IRQ vectors (the
; bench machine under hybrid86 has no PIC at all).
%ifndef NSECT
%define NSECT 4
%endif
bits 16
org 0x7C00
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7000
    mov si, mover
    mov di, 0x600
    mov cx, mover_end - mover
    cld
    rep movsb
    jmp 0:0x600
mover:                          ; runs at 0x600: relative jumps only
    mov ax, 0x0200 | NSECT
    mov bx, 0x7C00
    mov cx, 0x0002              ; cylinder 0, sector 2
    xor dh, dh                  ; head 0
    int 0x13
    jc .fail
    mov al, 0xFF
    out 0x21, al                ; mask every IRQ (master and slave 8259)
    out 0xA1, al
    jmp 0:0x7C00
.fail:
    hlt
    jmp .fail
mover_end:
    times 510 - ($ - $$) db 0
    dw 0xAA55
