; `hybrid86 bench modes`: one workload run as real-mode, ring-0 or ring-3 code
; (MODE = 0, 1, 2), loaded at 0x7C00 without a BIOS.  ITER iterations; the
; guest then writes 0 to port 0xF4.  BUF is the 4 KiB data buffer.
%if MODE == 0
%define BUF 0                   ; real mode: DS = 0x2000
%else
%define BUF 0x20000
%endif
%ifndef MODE
%define MODE 0
%endif
%ifndef ITER
%define ITER 1000
%endif
bits 16
org 0x7C00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
%if MODE == 0
    mov ecx, ITER
    mov ax, 0x2000
    mov ds, ax
    call workload
    xor ax, ax
    mov ds, ax
    mov [result], ebx
    mov al, 0
    out 0xF4, al
    hlt
%include "workload.inc"
%else
    lgdt [gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm
bits 32
pm:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x70000
%if MODE == 1
    mov ecx, ITER
    call workload
    mov [result], ebx
    mov al, 0
    out 0xF4, al
    hlt
%else
    lidt [idtr]
    mov ax, 0x28
    ltr ax
    push dword 0x23
    push dword 0x60000
    push dword 0x202
    push dword 0x1B
    push dword user
    iretd
user:
    mov ecx, ITER
    call workload
    mov [result], ebx
    int 0x80
exit:                           ; int 0x80 (DPL 3 gate)
    mov al, 0
    out 0xF4, al
    hlt
%endif
%include "workload.inc"
align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF
    dq 0x00CF92000000FFFF
    dq 0x00CFFA000000FFFF
    dq 0x00CFF2000000FFFF
    dw 0x67, tss, 0x8900, 0
gdt_end:
gdtr: dw gdt_end - gdt - 1
      dd gdt
idtr: dw 0x81*8 - 1
      dd idt
align 4
tss: dd 0, 0x70000, 0x10
     times 0x68 - 12 db 0
align 8
idt: times 0x80 dq 0
%if MODE == 2
     dw exit, 0x08, 0xEE00, 0
%else
     dq 0
%endif
%endif
align 4
result: dd 0
