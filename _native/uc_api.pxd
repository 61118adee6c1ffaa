# The part of Unicorn's C API (<unicorn/unicorn.h>, shipped in the PyPI wheel)
# that hybrid86's native code calls.  Declarations only; the build links
# against the wheel's libunicorn.so.2 (see setup.py).

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "unicorn/unicorn.h" nogil:
    ctypedef struct uc_engine:
        pass
    ctypedef struct uc_context:
        pass
    ctypedef size_t uc_hook
    ctypedef int uc_err

    uc_err UC_ERR_OK
    int UC_HOOK_INTR
    int UC_HOOK_INSN
    int UC_HOOK_TLB_FILL
    int UC_PROT_ALL
    int UC_PROT_READ
    int UC_PROT_WRITE
    int UC_PROT_EXEC
    int UC_MEM_READ
    int UC_MEM_WRITE
    int UC_MEM_FETCH
    ctypedef int uc_mem_type
    ctypedef struct uc_tlb_entry:
        uint64_t paddr
        int perms

    unsigned int uc_version(unsigned int *major, unsigned int *minor)
    const char *uc_strerror(uc_err code)
    uc_err uc_emu_start(uc_engine *uc, uint64_t begin, uint64_t until,
                        uint64_t timeout, size_t count)
    uc_err uc_emu_stop(uc_engine *uc)
    uc_err uc_reg_read(uc_engine *uc, int regid, void *value)
    uc_err uc_reg_write(uc_engine *uc, int regid, const void *value)
    uc_err uc_reg_read_batch(uc_engine *uc, int *regs, void **vals, int count)
    uc_err uc_reg_write_batch(uc_engine *uc, int *regs, void *const *vals, int count)
    uc_err uc_hook_add(uc_engine *uc, uc_hook *hh, int type, void *callback,
                       void *user_data, uint64_t begin, uint64_t end, ...)
    uc_err uc_hook_del(uc_engine *uc, uc_hook hh)
    uc_err uc_context_alloc(uc_engine *uc, uc_context **context)
    uc_err uc_context_free(uc_context *context)
    uc_err uc_context_save(uc_engine *uc, uc_context *context)
    uc_err uc_context_restore(uc_engine *uc, uc_context *context)
    size_t uc_context_size(uc_engine *uc)

cdef extern from "unicorn/x86.h" nogil:
    int UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX
    int UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI
    int UC_X86_REG_EIP, UC_X86_REG_EFLAGS
    int UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS
    int UC_X86_REG_FS, UC_X86_REG_GS
    int UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CR3, UC_X86_REG_CR4
    int UC_X86_INS_IN, UC_X86_INS_OUT
