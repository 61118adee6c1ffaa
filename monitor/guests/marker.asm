; MARKER.COM - tells the host that DOS ran AUTOEXEC.BAT to its end.
;
; Writes MARKER to the 0xE9 debug console (the Bochs/QEMU convention) and then
; writes exit status 0 to port 0xF4 (QEMU's isa-debug-exit convention; hybrid86
; ends the run with the value written).  On a machine without that port it
; simply returns to DOS.
        org 0x100
        mov si, message
next:   lodsb
        test al, al
        jz done
        out 0xE9, al
        jmp next
done:   mov al, 0
        out 0xF4, al
        mov ax, 0x4C00          ; int 21h AH=4Ch: terminate with return code 0
        int 0x21
message:
        db "HYBRID86-DOS-OK", 13, 10, 0
