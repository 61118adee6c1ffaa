; control_registers - mov to/from CR0 CR2 CR3 CR4 at ring 0 and ring 3,
; paging with an identity map: #PF error codes and CR2 (not present, read-only
; with CR0.WP, supervisor pages from ring 3, instruction fetch), accessed and
; dirty bits, invlpg after remapping, a 4 MiB page, and pages mapped in the
; top 4 MiB of the linear address space.
%define PROBE_NAME "control_registers"
%include "boot.inc"

PT_HIGH equ 0x32000             ; page table for linear 0xFFC00000-0xFFFFFFFF
HIGH_PHYS equ 0x60000           ; frames behind it: 0x60000-0x6FFFF (16 pages)

; PTE linear -> the PTE's address
%define PTE(lin) (PT_ADDR + ((lin) >> 12) * 4)

probe_main:
        ; ---- CR0
        mov eax, cr0
        P32 "cr0.initial", eax
        mov eax, 0x4000003B             ; CD NE TS ET MP PE
        mov cr0, eax
        mov eax, cr0
        P32 "cr0.cd_ne_ts_mp", eax
        clts
        mov eax, cr0
        P32 "cr0.clts", eax
        mov eax, 0x00000001             ; ET cleared
        mov cr0, eax
        mov eax, cr0
        P32 "cr0.et_forced", eax
        mov eax, 0x00050011             ; WP AM
        mov cr0, eax
        mov eax, cr0
        P32 "cr0.wp_am", eax
        mov eax, 0x00000011
        mov cr0, eax
        lmsw ax
        mov eax, cr0
        P32 "cr0.lmsw11", eax
        mov ax, 0x000E                  ; lmsw cannot clear PE
        lmsw ax
        mov eax, cr0
        P32 "cr0.lmsw0e", eax
        mov eax, 0x00000011
        mov cr0, eax
        ; (PG without PE, #GP(0) on a CPU, is not probed: QEMU 7.2 accepts it)
        ; ---- CR2, CR3, CR4
        mov eax, 0x12345678
        mov cr2, eax
        xor eax, eax
        mov eax, cr2
        P32 "cr2", eax
        mov eax, 0x00031018             ; PWT PCD
        mov cr3, eax
        xor eax, eax
        mov eax, cr3
        P32 "cr3", eax
        mov eax, 0x0000009C             ; PGE PSE DE TSD
        mov cr4, eax
        xor eax, eax
        mov eax, cr4
        P32 "cr4.9c", eax
        xor eax, eax
        mov cr4, eax
        mov eax, cr4
        P32 "cr4.0", eax
        ; ---- at ring 3: #GP(0)
        RING3 r3_read_cr0, 0x202
        RING3 r3_write_cr0, 0x202
        RING3 r3_read_cr3, 0x202
        RING3 r3_read_cr3, 0x3202

        ; ---- page tables: identity map of 0-4 MiB (user, writable) with holes
        cld
        mov edi, PD_ADDR
        xor eax, eax
        mov ecx, 1024
        rep stosd
        mov dword [PD_ADDR], PT_ADDR | 7
        mov dword [PD_ADDR + 4], 0x00000087     ; 4 MiB page at 4 MiB -> physical 0
        mov dword [PD_ADDR + 4092], PT_HIGH | 7 ; the top 4 MiB
        mov edi, PT_ADDR
        mov eax, 7
        mov ecx, 1024
.pt:    stosd
        add eax, 0x1000
        loop .pt
        mov dword [PTE(0x50000)], 0                     ; not present
        mov dword [PTE(0x51000)], 0x51000 | 5           ; user, read-only
        mov dword [PTE(0x52000)], 0x52000 | 3           ; supervisor, writable
        mov dword [PTE(0x53000)], 0x54000 | 7           ; remapped below
        mov dword [PTE(0x56000)], 0x56000 | 7           ; A/D bits watched
        mov edi, PT_HIGH
        xor eax, eax
        mov ecx, 1024
        rep stosd
        mov dword [PT_HIGH], HIGH_PHYS | 7              ; 0xFFC00000
        mov dword [PT_HIGH + 4 * 0x300], (HIGH_PHYS + 0x1000) | 7   ; 0xFFF00000
        mov dword [PT_HIGH + 4 * 0x3FF], (HIGH_PHYS + 0x2000) | 7   ; 0xFFFFF000
        mov dword [0x54000], 0x54545454
        mov dword [0x55000], 0x55555555
        mov dword [HIGH_PHYS], 0
        mov dword [HIGH_PHYS + 0x1000], 0
        mov dword [HIGH_PHYS + 0x2000], 0
        mov eax, PD_ADDR
        mov cr3, eax
        mov eax, 0x10                   ; PSE
        mov cr4, eax
        mov eax, 0x80000011
        mov cr0, eax
        mov eax, cr0
        P32 "paging.cr0", eax

        ; ---- #PF at ring 0
        mov eax, [0x7C00]
        P32 "identity.7c00", eax
        mov eax, [0x400000 + 0x7C00]    ; through the 4 MiB page
        P32 "pse.407c00", eax
        TRY mov eax, [0x50000]
        mov eax, cr2
        P32 "pf.read.cr2", eax
        TRY mov dword [0x50010], 1
        mov eax, cr2
        P32 "pf.write.cr2", eax
        TRY mov ax, [0x50FFF + 0x1000]  ; inside the read-only page: no fault
        TRY mov eax, [0x4FFFE]          ; crosses into 0x50000
        mov eax, cr2
        P32 "pf.cross.cr2", eax
        mov dword [0x51000], 0x51515151 ; read-only, CR0.WP=0: allowed at ring 0
        P32 "ro.wp0.value", dword [0x51000]
        mov eax, 0x80010011             ; WP
        mov cr0, eax
        TRY mov dword [0x51004], 2
        mov eax, cr2
        P32 "pf.wp.cr2", eax
        ; instruction fetch from a not-present page
        mov eax, 0x50000
        TRY call eax
        mov eax, cr2
        P32 "pf.fetch.cr2", eax
        ; rep movsd running into a not-present page: the registers at the fault
        mov esi, 0x4FFF0
        mov edi, v_scratch
        mov ecx, 8
        TRY rep movsd
        P32 "pf.movsd.ecx", dword [EX_ECX]
        P32 "pf.movsd.esi", dword [EX_ESI]
        P32 "pf.movsd.edi", dword [EX_EDI]
        mov eax, cr2
        P32 "pf.movsd.cr2", eax

        ; ---- accessed and dirty bits
        P32 "ad.pte.before", dword [PTE(0x56000)]
        mov eax, [0x56000]
        P32 "ad.pte.read", dword [PTE(0x56000)]
        mov dword [0x56004], eax
        P32 "ad.pte.write", dword [PTE(0x56000)]
        mov eax, [PD_ADDR]
        P32 "ad.pde0", eax

        ; ---- invlpg after remapping
        mov eax, [0x53000]
        P32 "remap.before", eax
        mov dword [PTE(0x53000)], 0x55000 | 7
        invlpg [0x53000]
        mov eax, [0x53000]
        P32 "remap.after_invlpg", eax
        ; a CR3 reload also flushes
        mov dword [PTE(0x53000)], 0x54000 | 7
        mov eax, cr3
        mov cr3, eax
        mov eax, [0x53000]
        P32 "remap.after_cr3", eax

        ; ---- the top 4 MiB of the linear address space, mapped to RAM
        mov dword [0xFFC00000], 0xC0C0C0C0
        mov dword [0xFFF00004], 0xF0F0F0F0
        mov dword [0xFFFFFFFC], 0xFCFCFCFC
        P32 "high.ffc00000.phys", dword [HIGH_PHYS]
        P32 "high.fff00004.phys", dword [HIGH_PHYS + 0x1004]
        P32 "high.fffffffc.phys", dword [HIGH_PHYS + 0x2FFC]
        mov dword [HIGH_PHYS + 0x8], 0x12121212
        P32 "high.ffc00008", dword [0xFFC00008]
        ; code there: copy `high_fn` to 0xFFC00100 and 0xFFFFF100 and call it
        mov esi, high_fn
        mov edi, 0xFFC00100
        mov ecx, high_fn_len
        rep movsb
        mov esi, high_fn
        mov edi, 0xFFFFF100
        mov ecx, high_fn_len
        rep movsb
        mov eax, 0xFFC00100
        call eax
        P32 "high.call.ffc00100", eax
        mov eax, 0xFFFFF100
        call eax
        P32 "high.call.fffff100", eax
        ; not mapped there: #PF
        TRY mov eax, [0xFFE00000]
        mov eax, cr2
        P32 "high.pf.cr2", eax
        ; a data segment based in the top 4 MiB
        mov ax, SEL_MONREGION
        mov fs, ax
        mov eax, [fs:0x8]
        P32 "high.fs.8", eax
        mov ax, SEL_DATA0
        mov fs, ax

        ; ---- #PF from ring 3 (IOPL 0 IF 1, then IOPL 3)
        mov dword [v_scratch + 0x90], 0x202
        PUTS "== ring 3, IOPL 0", 10
        call ring3_pf
        mov dword [v_scratch + 0x90], 0x3202
        PUTS "== ring 3, IOPL 3", 10
        call ring3_pf
        ret

ring3_pf:
        RING3 r3_read_super, [v_scratch + 0x90]
        call pcr2
        RING3 r3_write_super, [v_scratch + 0x90]
        call pcr2
        RING3 r3_read_np, [v_scratch + 0x90]
        call pcr2
        RING3 r3_write_ro, [v_scratch + 0x90]
        call pcr2
        RING3 r3_fetch_super, [v_scratch + 0x90]
        call pcr2
        RING3 r3_read_ro, [v_scratch + 0x90]
        P32 "r3.read_ro.eax", dword [R3_EAX]
        RING3 r3_high, [v_scratch + 0x90]
        P32 "r3.high.eax", dword [R3_EAX]
        RING3 r3_invlpg, [v_scratch + 0x90]
        ret

pcr2:
        mov eax, cr2
        P32 "cr2", eax
        ret

high_fn:
        call .here
.here:  pop eax                         ; EIP-relative: where we run
        ret
high_fn_len equ $ - high_fn

r3_read_cr0:
        mov eax, cr0
        int 0x80
r3_write_cr0:
        mov eax, 0x11
        mov cr0, eax
        int 0x80
r3_read_cr3:
        mov eax, cr3
        int 0x80
r3_read_super:
        mov eax, [0x52000]
        int 0x80
r3_write_super:
        mov dword [0x52000], 1
        int 0x80
r3_read_np:
        mov eax, [0x50020]
        int 0x80
r3_write_ro:
        mov dword [0x51008], 1
        int 0x80
r3_fetch_super:
        mov eax, 0x52000
        jmp eax
r3_read_ro:
        mov eax, [0x51000]
        int 0x80
r3_high:
        mov eax, [0xFFF00004]
        int 0x80
r3_invlpg:
        invlpg [0x53000]
        int 0x80

%include "end.inc"
