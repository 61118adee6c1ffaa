# The C-level API of the hybrid86 x86 decoder (implementation: decoder.pyx,
# table: opcodes.py).  Other Cython modules `cimport bt.decoder` and call
# decode_insn() without the GIL.
#
# Enum values here mirror the IntEnums in bt/opcodes.py; decoder.pyx checks
# that they agree when it is imported, so a drift fails loudly.

from libc.stdint cimport uint8_t, int8_t, uint16_t, int32_t, uint32_t

cdef enum:
    # Insn.status
    ST_OK = 0            # a defined P6 instruction
    ST_INVALID = 1       # #UD
    ST_TRUNCATED = 2     # buffer ended first: fetch the next page and retry
    ST_TOO_LONG = 3      # more than 15 bytes: #GP(0)
    ST_UNSUPPORTED = 4   # MMX/SSE/...: length valid, semantics not modelled

    # Insn.flow (Flow in opcodes.py)
    FL_NONE = 0
    FL_JCC = 1
    FL_JMP = 2
    FL_CALL = 3
    FL_RET = 4
    FL_JMP_IND = 5
    FL_CALL_IND = 6
    FL_JMPF = 7
    FL_JMPF_IND = 8
    FL_CALLF = 9
    FL_CALLF_IND = 10
    FL_RETF = 11
    FL_IRET = 12
    FL_INT = 13
    FL_INT3 = 14
    FL_INTO = 15
    FL_LOOP = 16
    FL_JCXZ = 17
    FL_HLT = 18
    FL_UD = 19
    FL_SYS = 20

    # Insn.sens (Sens in opcodes.py)
    SE_IDENT = 0
    SE_SEG_LOAD = 1
    SE_SEG_READ = 2
    SE_FLAGS = 3
    SE_IO = 4
    SE_SYSREG = 5
    SE_CACHE_TLB = 6
    SE_MSR = 7
    SE_CPUID = 8
    SE_RDTSC = 9
    SE_SYSCALL = 10
    SE_HLT = 11
    SE_INT = 12
    SE_IRET = 13
    SE_FAR_FLOW = 14
    SE_RDPMC = 15

    # Insn.priv (Priv in opcodes.py)
    PV_NONE = 0
    PV_CPL0 = 1
    PV_IOPL = 2
    PV_CR4 = 3

    # Insn.attrs bits (Attr in opcodes.py)
    AT_STACK = 0x0001
    AT_STRING = 0x0002
    AT_STR_SRC = 0x0004
    AT_STR_DST = 0x0008
    AT_LOCK = 0x0010
    AT_REP = 0x0020
    AT_REPZ = 0x0040
    AT_MEM_ONLY = 0x0080
    AT_REG_ONLY = 0x0100
    AT_BYTE = 0x0200
    AT_XLAT = 0x0400
    AT_ADDR_NAME = 0x0800
    AT_COND = 0x1000
    AT_SEXT = 0x2000

    # Insn.prefixes bits, one per legacy prefix byte seen
    PF_ES = 0x001
    PF_CS = 0x002
    PF_SS = 0x004
    PF_DS = 0x008
    PF_FS = 0x010
    PF_GS = 0x020
    PF_OPSIZE = 0x040    # 66
    PF_ADSIZE = 0x080    # 67
    PF_LOCK = 0x100      # F0
    PF_REPNE = 0x200     # F2
    PF_REP = 0x400       # F3

    # Segment numbers (also the ModRM.reg encoding of Sreg)
    SEG_ES = 0
    SEG_CS = 1
    SEG_SS = 2
    SEG_DS = 3
    SEG_FS = 4
    SEG_GS = 5
    SEG_NONE = 0xFF

    # Register ids: (class << 3) | number.  Number is the x86 encoding
    # (0 eAX, 1 eCX, 2 eDX, 3 eBX, 4 eSP, 5 eBP, 6 eSI, 7 eDI; for bytes
    # AL CL DL BL AH CH DH BH).
    RC_GPR8 = 1
    RC_GPR16 = 2
    RC_GPR32 = 3
    RC_SEG = 4
    RC_CR = 5
    RC_DR = 6
    RC_ST = 7
    REG_NONE = 0xFF

    # Insn.rep
    REP_NONE = 0
    REP_F3 = 1           # REP / REPE (the last of F2/F3 wins)
    REP_F2 = 2           # REPNE

    # Operand.type
    OT_NONE = 0
    OT_REG = 1
    OT_MEM = 2           # the ModRM/moffs memory operand: see Insn.mem_*
    OT_IMM = 3
    OT_REL = 4           # relative branch: see Insn.rel / Insn.target
    OT_FAR = 5           # direct far pointer: Insn.far_sel:far_off
    OT_STR_SRC = 6       # DS:[eSI] (override applies)
    OT_STR_DST = 7       # ES:[eDI]

    MAX_INSN_LEN = 15
    MAX_OPERANDS = 3

ctypedef struct Operand:
    uint8_t type         # OT_*
    uint8_t reg          # register id for OT_REG, else REG_NONE
    uint8_t size         # bits (0 when the size is not an operand fact)

ctypedef struct Insn:
    uint8_t length       # bytes; meaningful for ST_OK and ST_UNSUPPORTED
    uint8_t status       # ST_*
    uint16_t prefixes    # PF_* bits of every prefix byte seen
    uint8_t nprefixes    # number of prefix bytes (the opcode starts here)
    uint8_t seg          # segment override (last one wins) or SEG_NONE
    uint8_t lock         # F0 present (validated against the entry)
    uint8_t rep          # REP_* (last of F2/F3 wins)
    uint8_t opsize       # 8 for byte operations, else 16 or 32
    uint8_t eff_opsize   # effective operand-size attribute: 16 or 32
    uint8_t addrsize     # 16 or 32
    uint8_t opmap        # 1 one-byte, 2 0F, 3 0F38, 4 0F3A
    uint8_t opcode       # the last opcode byte
    uint8_t opcode_off   # offset of that byte in the instruction
    uint16_t entry       # index into the flattened table (decoder.entry_info)
    uint8_t has_modrm
    uint8_t modrm
    uint8_t mod          # ModRM fields
    uint8_t reg
    uint8_t rm
    uint8_t has_sib
    uint8_t sib
    uint8_t has_mem      # a ModRM or moffs memory operand exists
    uint8_t mem_base     # register id or REG_NONE
    uint8_t mem_index    # register id or REG_NONE
    uint8_t mem_scale    # 1 2 4 8
    uint8_t mem_seg      # effective segment: override, else default (SS for
                         # eBP/eSP bases and BP-based 16-bit forms, else DS)
    uint8_t disp_size    # 0 1 2 4 bytes
    uint8_t disp_off     # offset of the displacement bytes
    int32_t disp         # sign-extended (disp16 of [disp16]/moffs16 is
                         # zero-extended: it is an absolute offset)
    uint8_t nops
    Operand ops[3]       # operands in Intel order
    uint8_t imm_size     # bytes of the first immediate (0 none)
    uint8_t imm_off
    uint32_t imm         # value as used: sign-extended to operand size when
                         # the table says so, masked to the operand size
    uint8_t imm2_size    # second immediate: ENTER level8, far-ptr selector16
    uint8_t imm2_off
    uint32_t imm2
    uint8_t flow         # FL_*
    uint8_t sens         # SE_*
    uint8_t priv         # PV_*
    uint16_t attrs       # AT_*
    int32_t rel          # relative branch displacement (sign-extended)
    uint32_t target      # (address + length + rel) masked to eff_opsize
    uint16_t far_sel     # direct far JMP/CALL selector
    uint32_t far_off     # ... and offset

cdef int decode_insn(const uint8_t* buf, size_t avail, uint32_t address,
                     bint mode32, Insn* out) noexcept nogil
