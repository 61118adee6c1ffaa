; boot.asm - boot sector of the hybrid86 demo guest (1.44 MB floppy).
;
; The BIOS loads this sector to 0000:7C00 and jumps to it with DL = the boot
; drive.  It reads the kernel (KERNEL_SECTORS sectors starting at LBA 1,
; defined by the builder with -DKERNEL_SECTORS=n) to 0000:8000 with int 13h
; AH=02h, one sector per call: a sector-sized transfer to a 512-byte aligned
; buffer can never cross a 64 KiB DMA boundary, and it needs nothing but
; the plainest BIOS disk service.  LBA -> CHS uses the fixed 1.44 MB geometry
; (80 cylinders, 2 heads, 18 sectors per track).  Each read is retried after
; a disk reset; a read that keeps failing prints a message and halts.

%include "layout.inc"

%ifndef KERNEL_SECTORS
  %error "assemble with -DKERNEL_SECTORS=n"
%endif

SECTORS_PER_TRACK   equ 18
HEADS               equ 2
RETRIES             equ 5

        bits 16
        org 0x7C00

start:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7C00
        jmp 0x0000:.cs_ok               ; some BIOSes enter at 07C0:0000
.cs_ok:
        sti
        cld
        mov [boot_drive], dl

        mov si, msg_loading
        call print

        mov word [lba], 1               ; sector 0 is this boot sector
        mov word [dest_seg], KERNEL_SEG
.next_sector:
        cmp word [lba], KERNEL_SECTORS + 1
        jae .loaded

        ; LBA -> CHS: sector = lba % 18 + 1, head = (lba / 18) % 2,
        ; cylinder = lba / 36
        mov ax, [lba]
        xor dx, dx
        mov bx, SECTORS_PER_TRACK
        div bx                          ; ax = lba / 18, dx = lba % 18
        inc dx
        mov cl, dl                      ; CL = sector (1-based; cylinder < 256)
        xor dx, dx
        mov bx, HEADS
        div bx                          ; ax = cylinder, dx = head
        mov ch, al                      ; CH = cylinder
        mov dh, dl                      ; DH = head
        mov dl, [boot_drive]

        mov di, RETRIES
.try:
        mov es, [dest_seg]
        xor bx, bx                      ; ES:BX = destination
        mov ax, 0x0201                  ; AH=02h read, AL=1 sector
        push cx
        push dx
        int 0x13
        pop dx
        pop cx
        jnc .read_ok
        dec di
        jz .disk_error
        xor ax, ax                      ; AH=00h: reset the controller, retry
        int 0x13
        jmp .try
.read_ok:
        inc word [lba]
        add word [dest_seg], 512 / 16
        jmp .next_sector

.loaded:
        mov si, msg_ok
        call print
        mov dl, [boot_drive]
        jmp 0x0000:KERNEL_BASE          ; the kernel starts in real mode

.disk_error:
        mov si, msg_error
        call print
.halt:
        cli
        hlt
        jmp .halt

; print: write the NUL-terminated string at DS:SI with int 10h AH=0Eh
; (teletype), to COM1 (polled, bounded wait) and to the 0xE9 debug console.
print:
        lodsb
        test al, al
        jz .done
        mov ah, 0x0E
        mov bx, 0x0007
        push ax
        int 0x10
        pop ax
        out DEBUGCON, al
        mov ah, al
        mov dx, COM1 + 5                ; line status register
        mov cx, 0xFFFF
.wait:  in al, dx
        test al, 0x20                   ; transmitter holding register empty?
        loopz .wait
        mov al, ah
        mov dx, COM1
        out dx, al
        jmp print
.done:
        ret

msg_loading:    db "hybrid86 demo: loading kernel", 0
msg_ok:         db " ok", 13, 10, 0
msg_error:      db 13, 10, "hybrid86 demo: disk read error, halted", 13, 10, 0

boot_drive:     db 0
lba:            dw 0
dest_seg:       dw 0

        times 510 - ($ - $$) db 0
        dw 0xAA55
