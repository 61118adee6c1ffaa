# cython: language_level=3
"""Table-driven x86 decoder for 16- and 32-bit code (P6 instruction set).

The opcode facts live in ``bt/opcodes.py``.  When this module is imported it
flattens that table into the C arrays below (``_build_tables``); the decoder
proper (``decode_insn``) is a chain of stages that each may fail:

  prefixes -> opcode (one-byte, 0F, 0F38/0F3A) -> ModRM -> SIB ->
  displacement -> immediate -> operands and branch target

Every byte is fetched through ``_need``, which enforces the architectural
15-byte limit (#GP, ST_TOO_LONG) before it reports that the caller's buffer
ended (ST_TRUNCATED, so the translator can fetch across a page boundary).
"""

from libc.string cimport memset
from libc.stdint cimport uint8_t, int8_t, int16_t, uint16_t, int32_t, uint32_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from collections import namedtuple

from bt import opcodes as _opc

# ---------------------------------------------------------------------------
# Flattened table (filled once at import from bt/opcodes.py)
# ---------------------------------------------------------------------------

cdef enum:
    MAX_ENTRIES = 2048
    # Entry.kind
    EK_INSN = 0
    EK_GROUP = 1
    EK_PREFIX = 2
    EK_ESCAPE = 3
    EK_ESCAPE3 = 4
    EK_X87 = 5
    # Imm kinds
    IM_NONE = 0
    IM_IB = 1
    IM_IW = 2
    IM_IZ = 3
    IM_JB = 4
    IM_JZ = 5
    IM_AP = 6
    IM_MOFFS = 7
    IM_IW_IB = 8
    # operand-code kinds
    OK_NONE = 0
    OK_E = 1        # r/m: register or memory
    OK_G = 2        # reg field: general register
    OK_M = 3        # r/m: memory only
    OK_S = 4        # reg field: segment register
    OK_C = 5        # reg field: control register
    OK_D = 6        # reg field: debug register
    OK_R = 7        # r/m: general register, mod ignored
    OK_F = 8        # x87 r/m: memory or ST(i)
    OK_I = 9        # immediate
    OK_J = 10       # relative branch
    OK_A = 11       # direct far pointer
    OK_O = 12       # moffs
    OK_X = 13       # DS:[eSI]
    OK_Y = 14       # ES:[eDI]
    OK_Z = 15       # register in opcode bits 2..0
    OK_ACC = 16     # AL / eAX
    OK_CL = 17
    OK_DX = 18
    OK_ONE = 19     # constant 1
    OK_SEG = 20     # fixed segment register
    OK_RVMW = 21    # Rv/Mw
    # operand-code sizes
    SZ_NONE = 0
    SZ_B = 1
    SZ_W = 2
    SZ_D = 3
    SZ_Q = 4
    SZ_V = 5
    SZ_Z = 6
    SZ_P = 7
    SZ_A = 8
    SZ_S = 9

ctypedef struct Entry:
    uint8_t kind
    uint8_t status
    uint8_t modrm
    uint8_t imm
    uint8_t flow
    uint8_t sens
    uint8_t priv
    uint8_t reg_ok
    uint16_t attrs
    uint16_t sub         # GROUP/X87: index of the first of 16 sub-entries
    uint8_t x87          # X87: escape byte - 0xD8
    uint8_t nops
    uint8_t opnd[3]      # operand codes (indices into OPERAND_CODES)

cdef Entry _T[MAX_ENTRIES]
cdef uint16_t _MAP1[256]
cdef uint16_t _MAP2[256]
cdef uint16_t _ENT_0F38
cdef uint16_t _ENT_0F3A
cdef uint16_t _PREFIX_BIT[256]
cdef uint8_t _PREFIX_SEG[256]
cdef uint8_t _X87_BAD[8][64]   # [escape-0xD8][modrm-0xC0]: 1 = #UD
cdef uint8_t _OC_KIND[64]
cdef uint8_t _OC_SIZE[64]
cdef uint8_t _OC_REG[64]

# The Python Op for each flattened index (for the Python view).
_ENTRY_OPS = []

# 16-bit addressing: base and index register numbers per r/m (SDM Table 2-1).
#   rm: 0 [BX+SI] 1 [BX+DI] 2 [BP+SI] 3 [BP+DI] 4 [SI] 5 [DI] 6 [BP] 7 [BX]
cdef uint8_t _B16_BASE[8]
cdef uint8_t _B16_INDEX[8]
_B16_BASE[:] = [3, 3, 5, 5, 6, 7, 5, 3]
_B16_INDEX[:] = [6, 7, 6, 7, 0xFF, 0xFF, 0xFF, 0xFF]


cdef void _store(int idx, object e) except *:
    """Copy one opcodes.Op into _T[idx] (groups recurse into 16 slots)."""
    cdef Entry* t = &_T[idx]
    t.kind = int(e.kind)
    t.status = int(e.status)
    t.modrm = 1 if e.modrm else 0
    t.imm = int(e.imm)
    t.flow = int(e.flow)
    t.sens = int(e.sens)
    t.priv = int(e.priv)
    t.reg_ok = e.reg_ok
    t.attrs = e.attrs
    t.nops = len(e.operands)
    for i, o in enumerate(e.operands):
        t.opnd[i] = _opc.OPERAND_CODES.index(o)


def _add(e):
    idx = len(_ENTRY_OPS)
    if idx >= MAX_ENTRIES:
        raise RuntimeError("bt.decoder: opcode table exceeds MAX_ENTRIES")
    _ENTRY_OPS.append(e)
    _store(idx, e)
    return idx


def _add_tree(e):
    idx = _add(e)
    if e.sub is not None:
        first = len(_ENTRY_OPS)
        for s in e.sub:
            _add(s)
        _T[idx].sub = first
    return idx


_SIZE_CODES = {"": SZ_NONE, "b": SZ_B, "w": SZ_W, "d": SZ_D, "q": SZ_Q,
               "v": SZ_V, "z": SZ_Z, "p": SZ_P, "a": SZ_A, "s": SZ_S,
               "bs": SZ_B}
_KIND_CODES = {"E": OK_E, "G": OK_G, "M": OK_M, "S": OK_S, "C": OK_C,
               "D": OK_D, "R": OK_R, "I": OK_I, "J": OK_J, "A": OK_A,
               "O": OK_O, "X": OK_X, "Y": OK_Y, "Z": OK_Z}
_FIXED = {"AL": (OK_ACC, SZ_B, 0), "eAX": (OK_ACC, SZ_V, 0),
          "CL": (OK_CL, SZ_B, 1), "DX": (OK_DX, SZ_W, 2),
          "1": (OK_ONE, SZ_B, 0), "F": (OK_F, SZ_NONE, 0),
          "Rv/Mw": (OK_RVMW, SZ_V, 0), "": (OK_NONE, SZ_NONE, 0)}


def _build_tables():
    cdef int i
    for i, code in enumerate(_opc.OPERAND_CODES):
        if code in _FIXED:
            k, s, r = _FIXED[code]
        elif code in _opc.SEG_NAMES or code.lower() in _opc.SEG_NAMES:
            k, s, r = OK_SEG, SZ_W, _opc.SEG_NAMES.index(code.lower())
        else:
            k, s, r = _KIND_CODES[code[0]], _SIZE_CODES[code[1:]], 0
        _OC_KIND[i], _OC_SIZE[i], _OC_REG[i] = k, s, r
    _add(_opc.bad())                               # index 0: plain #UD
    for b in range(256):
        _MAP1[b] = _add_tree(_opc.ONE_BYTE[b])
    for b in range(256):
        _MAP2[b] = _add_tree(_opc.TWO_BYTE[b])
    global _ENT_0F38, _ENT_0F3A
    _ENT_0F38 = _add(_opc.THREE_BYTE_38)
    _ENT_0F3A = _add(_opc.THREE_BYTE_3A)
    for b in range(256):
        bit, seg = _opc.PREFIXES.get(b, (0, -1))
        _PREFIX_BIT[b] = bit
        _PREFIX_SEG[b] = seg if seg >= 0 else SEG_NONE
    for esc in range(0xD8, 0xE0):
        _T[_MAP1[esc]].x87 = esc - 0xD8
        for m in range(64):
            _X87_BAD[esc - 0xD8][m] = (0xC0 + m) in _opc.X87_REG_INVALID[esc]


def _check_enums():
    """The pxd constants must equal the opcodes.py enums (one source)."""
    pairs = [(_opc.Status.OK, ST_OK), (_opc.Status.INVALID, ST_INVALID),
             (_opc.Status.TRUNCATED, ST_TRUNCATED),
             (_opc.Status.TOO_LONG, ST_TOO_LONG),
             (_opc.Status.UNSUPPORTED, ST_UNSUPPORTED),
             (_opc.Flow.SYS, FL_SYS), (_opc.Flow.UD, FL_UD),
             (_opc.Flow.JCC, FL_JCC), (_opc.Flow.RETF, FL_RETF),
             (_opc.Flow.JCXZ, FL_JCXZ), (_opc.Flow.LOOP, FL_LOOP),
             (_opc.Flow.JMPF, FL_JMPF), (_opc.Flow.CALLF, FL_CALLF),
             (_opc.Sens.RDPMC, SE_RDPMC), (_opc.Sens.FAR_FLOW, SE_FAR_FLOW),
             (_opc.Sens.SEG_LOAD, SE_SEG_LOAD), (_opc.Priv.CR4, PV_CR4),
             (_opc.Attr.SEXT, AT_SEXT), (_opc.Attr.BYTE, AT_BYTE),
             (_opc.Attr.LOCK, AT_LOCK), (_opc.Attr.MEM_ONLY, AT_MEM_ONLY),
             (_opc.Attr.REG_ONLY, AT_REG_ONLY),
             (_opc.Kind.X87, EK_X87), (_opc.Kind.ESCAPE3, EK_ESCAPE3),
             (_opc.Imm.IW_IB, IM_IW_IB), (_opc.Imm.MOFFS, IM_MOFFS)]
    for py, c in pairs:
        if int(py) != c:
            raise ImportError(f"bt.decoder: {py!r} is {int(py)} in opcodes.py"
                              f" but {c} in decoder.pxd")
    if len(_opc.Flow) != FL_SYS + 1 or len(_opc.Sens) != SE_RDPMC + 1:
        raise ImportError("bt.decoder: Flow/Sens enums and decoder.pxd differ")
    for b, (bit, _seg) in _opc.PREFIXES.items():
        if b == 0x66 and bit != PF_OPSIZE or b == 0xF0 and bit != PF_LOCK:
            raise ImportError("bt.decoder: prefix bits differ from the pxd")


_check_enums()
_build_tables()


# ---------------------------------------------------------------------------
# Decoder stages
# ---------------------------------------------------------------------------

cdef inline int _need(unsigned int pos, unsigned int n, size_t avail) noexcept nogil:
    """0 if bytes [pos, pos+n) may be read, else the status to report.

    The 15-byte limit wins over the end of the buffer: once the instruction
    is known to need byte 16, the CPU raises #GP whatever that byte is.
    """
    if pos + n > MAX_INSN_LEN:
        return ST_TOO_LONG
    if pos + n > avail:
        return ST_TRUNCATED
    return 0


cdef inline int _fail(Insn* out, int status, unsigned int pos) noexcept nogil:
    out.status = status
    out.length = pos          # bytes examined when the stage failed
    out.flow = FL_NONE
    out.sens = SE_IDENT
    return status


cdef inline uint32_t _le(const uint8_t* p, int n) noexcept nogil:
    if n == 1:
        return p[0]
    if n == 2:
        return p[0] | (<uint32_t>p[1] << 8)
    return (p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


cdef inline uint32_t _mask(int bits) noexcept nogil:
    return 0xFFFFFFFF if bits == 32 else ((1u << bits) - 1)


cdef inline int32_t _sext(uint32_t v, int nbytes) noexcept nogil:
    if nbytes == 1:
        return <int8_t>v
    if nbytes == 2:
        return <int16_t>v
    return <int32_t>v


cdef inline uint8_t _gpr(int bits, int num) noexcept nogil:
    if bits == 8:
        return (RC_GPR8 << 3) | num
    if bits == 16:
        return (RC_GPR16 << 3) | num
    return (RC_GPR32 << 3) | num


cdef inline int _size_bits(uint8_t sz, int opsz) noexcept nogil:
    if sz == SZ_B:
        return 8
    if sz == SZ_W:
        return 16
    if sz == SZ_D:
        return 32
    if sz == SZ_Q:
        return 64
    if sz == SZ_V or sz == SZ_Z:
        return opsz
    if sz == SZ_P:
        return opsz + 16
    if sz == SZ_A:
        return 2 * opsz
    if sz == SZ_S:
        return 48
    return 0


cdef int _modrm_memory(const uint8_t* buf, size_t avail, unsigned int* ppos,
                       Insn* out) noexcept nogil:
    """Stages ModRM -> SIB -> displacement for a memory r/m (mod != 11).

    Returns 0 or a failure status.  SDM Vol. 2 Tables 2-1 (16-bit) and
    2-2/2-3 (32-bit, SIB).
    """
    cdef unsigned int pos = ppos[0]
    cdef int st, dsize = 0
    cdef uint8_t mod = out.mod, rm = out.rm, base, idx
    cdef bint ss_default = False, absolute = False
    out.has_mem = 1
    out.mem_scale = 1
    if out.addrsize == 16:
        # 16-bit forms: no SIB.  mod=00 rm=110 is [disp16] (no BP base).
        if mod == 0 and rm == 6:
            dsize = 2
            absolute = True
        else:
            out.mem_base = (RC_GPR16 << 3) | _B16_BASE[rm]
            if _B16_INDEX[rm] != 0xFF:
                out.mem_index = (RC_GPR16 << 3) | _B16_INDEX[rm]
            # BP-based forms default to SS (rm 2, 3 and rm 6 with a disp).
            ss_default = _B16_BASE[rm] == 5
            dsize = 1 if mod == 1 else (2 if mod == 2 else 0)
    else:
        if rm == 4:
            # SIB follows: scale (2 bits), index (4 = none), base.
            st = _need(pos, 1, avail)
            if st:
                return st
            out.has_sib = 1
            out.sib = buf[pos]
            pos += 1
            out.mem_scale = 1 << (out.sib >> 6)
            idx = (out.sib >> 3) & 7
            base = out.sib & 7
            if idx != 4:
                out.mem_index = (RC_GPR32 << 3) | idx
            if base == 5 and mod == 0:
                dsize = 4          # [index*scale + disp32], no base
            else:
                out.mem_base = (RC_GPR32 << 3) | base
                ss_default = base == 4 or base == 5
        elif rm == 5 and mod == 0:
            dsize = 4              # [disp32]
            absolute = True
        else:
            out.mem_base = (RC_GPR32 << 3) | rm
            ss_default = rm == 5
        if mod == 1:
            dsize = 1
        elif mod == 2:
            dsize = 4
    if dsize:
        st = _need(pos, dsize, avail)
        if st:
            return st
        out.disp_size = dsize
        out.disp_off = pos
        if absolute:
            out.disp = <int32_t>_le(buf + pos, dsize)
        else:
            out.disp = _sext(_le(buf + pos, dsize), dsize)
        pos += dsize
    if out.seg != SEG_NONE:
        out.mem_seg = out.seg
    else:
        out.mem_seg = SEG_SS if ss_default else SEG_DS
    ppos[0] = pos
    return 0


cdef int _immediates(const uint8_t* buf, size_t avail, unsigned int* ppos,
                     uint8_t kind, uint16_t attrs, Insn* out) noexcept nogil:
    """Immediate stage: sizes by kind, operand size and address size."""
    cdef unsigned int pos = ppos[0]
    cdef int st, n = 0, n2 = 0
    cdef int opsz = out.eff_opsize
    if kind == IM_NONE:
        return 0
    if kind == IM_IB or kind == IM_JB:
        n = 1
    elif kind == IM_IW:
        n = 2
    elif kind == IM_IZ or kind == IM_JZ:
        n = opsz // 8
    elif kind == IM_AP:
        n, n2 = opsz // 8, 2      # offset first, then the selector
    elif kind == IM_IW_IB:
        n, n2 = 2, 1              # ENTER size16, level8
    elif kind == IM_MOFFS:
        n = out.addrsize // 8
    st = _need(pos, n + n2, avail)
    if st:
        return st
    cdef uint32_t v = _le(buf + pos, n)
    if kind == IM_MOFFS:
        # The offset is an absolute address: the memory operand's disp.
        out.has_mem = 1
        out.mem_scale = 1
        out.disp = <int32_t>v
        out.disp_size = n
        out.disp_off = pos
        out.mem_seg = out.seg if out.seg != SEG_NONE else SEG_DS
        pos += n
        ppos[0] = pos
        return 0
    if kind == IM_JB or kind == IM_JZ:
        out.rel = _sext(v, n)
        out.imm = v
    elif attrs & AT_SEXT:
        out.imm = (<uint32_t>_sext(v, 1)) & _mask(opsz)
    else:
        out.imm = v
    out.imm_size = n
    out.imm_off = pos
    pos += n
    if n2:
        out.imm2 = _le(buf + pos, n2)
        out.imm2_size = n2
        out.imm2_off = pos
        pos += n2
    if kind == IM_AP:
        out.far_off = out.imm
        out.far_sel = <uint16_t>out.imm2
    ppos[0] = pos
    return 0


cdef void _operands(const Entry* e, Insn* out) noexcept nogil:
    """Fill Insn.ops[] from the entry's operand codes."""
    cdef int i, bits
    cdef uint8_t code, k
    cdef Operand* o
    cdef bint regform = out.mod == 3 or (e.attrs & AT_REG_ONLY)
    out.nops = e.nops
    for i in range(e.nops):
        code = e.opnd[i]
        k = _OC_KIND[code]
        bits = _size_bits(_OC_SIZE[code], out.eff_opsize)
        o = &out.ops[i]
        o.reg = REG_NONE
        o.size = bits
        if k == OK_E or k == OK_R or k == OK_RVMW:
            if regform:
                o.type = OT_REG
                o.reg = _gpr(bits, out.rm)
            else:
                o.type = OT_MEM
                if k == OK_RVMW:
                    o.size = 16
        elif k == OK_M or k == OK_O:
            o.type = OT_MEM
        elif k == OK_G:
            o.type = OT_REG
            o.reg = _gpr(bits, out.reg)
        elif k == OK_S:
            o.type = OT_REG
            o.reg = (RC_SEG << 3) | out.reg
        elif k == OK_C:
            o.type = OT_REG
            o.reg = (RC_CR << 3) | out.reg
            o.size = 32
        elif k == OK_D:
            o.type = OT_REG
            o.reg = (RC_DR << 3) | out.reg
            o.size = 32
        elif k == OK_F:
            if regform:
                o.type = OT_REG
                o.reg = (RC_ST << 3) | out.rm
            else:
                o.type = OT_MEM
        elif k == OK_I or k == OK_ONE:
            o.type = OT_IMM
        elif k == OK_J:
            o.type = OT_REL
        elif k == OK_A:
            o.type = OT_FAR
        elif k == OK_X:
            o.type = OT_STR_SRC
        elif k == OK_Y:
            o.type = OT_STR_DST
        elif k == OK_Z:
            o.type = OT_REG
            o.reg = _gpr(bits, out.opcode & 7)
        elif k == OK_ACC or k == OK_CL or k == OK_DX:
            o.type = OT_REG
            o.reg = _gpr(bits, _OC_REG[code])
        elif k == OK_SEG:
            o.type = OT_REG
            o.reg = (RC_SEG << 3) | _OC_REG[code]


cdef int decode_insn(const uint8_t* buf, size_t avail, uint32_t address,
                     bint mode32, Insn* out) noexcept nogil:
    """Decode one instruction at buf[0..avail) located at offset `address`.

    `address` is the instruction's EIP/IP (offset in CS), which is what
    branch targets are computed and truncated in.  Returns out.status.
    """
    cdef unsigned int pos = 0
    cdef uint8_t b
    cdef uint16_t pb, ei
    cdef int st
    cdef const Entry* e
    cdef bint memform

    memset(out, 0, sizeof(Insn))
    out.seg = SEG_NONE
    out.mem_base = REG_NONE
    out.mem_index = REG_NONE
    out.mem_seg = SEG_NONE

    # -- stage 1: legacy prefixes, any order, repeats allowed.  Repeated 66
    # or 67 do not toggle back; the last segment override and the last of
    # F2/F3 take effect.
    while True:
        st = _need(pos, 1, avail)
        if st:
            return _fail(out, st, pos)
        b = buf[pos]
        pb = _PREFIX_BIT[b]
        if pb == 0:
            break
        out.prefixes |= pb
        if _PREFIX_SEG[b] != SEG_NONE:
            out.seg = _PREFIX_SEG[b]
        elif b == 0xF3:
            out.rep = REP_F3
        elif b == 0xF2:
            out.rep = REP_F2
        pos += 1
    out.nprefixes = pos
    out.lock = (out.prefixes & PF_LOCK) != 0
    out.eff_opsize = 32 if mode32 != ((out.prefixes & PF_OPSIZE) != 0) else 16
    out.addrsize = 32 if mode32 != ((out.prefixes & PF_ADSIZE) != 0) else 16

    # -- stage 2: opcode bytes.
    ei = _MAP1[b]
    out.opmap = 1
    pos += 1
    if _T[ei].kind == EK_ESCAPE:
        st = _need(pos, 1, avail)
        if st:
            return _fail(out, st, pos)
        b = buf[pos]
        ei = _MAP2[b]
        out.opmap = 2
        pos += 1
        if _T[ei].kind == EK_ESCAPE3:
            st = _need(pos, 1, avail)
            if st:
                return _fail(out, st, pos)
            out.opmap = 3 if b == 0x38 else 4
            ei = _ENT_0F38 if b == 0x38 else _ENT_0F3A
            b = buf[pos]
            pos += 1
    out.opcode = b
    out.opcode_off = pos - 1

    # -- stage 3: ModRM; groups pick their sub-entry by reg and mod=11.
    e = &_T[ei]
    if e.modrm:
        st = _need(pos, 1, avail)
        if st:
            return _fail(out, st, pos)
        out.has_modrm = 1
        out.modrm = buf[pos]
        out.mod = out.modrm >> 6
        out.reg = (out.modrm >> 3) & 7
        out.rm = out.modrm & 7
        pos += 1
        if e.kind == EK_GROUP or e.kind == EK_X87:
            if e.kind == EK_X87 and out.mod == 3 and _X87_BAD[e.x87][out.modrm - 0xC0]:
                out.entry = ei
                return _fail(out, ST_INVALID, pos)
            ei = e.sub + out.reg + (8 if out.mod == 3 else 0)
            e = &_T[ei]
    out.entry = ei
    if e.status == ST_INVALID:
        return _fail(out, ST_INVALID, pos)
    if out.has_modrm and not ((e.reg_ok >> out.reg) & 1):
        return _fail(out, ST_INVALID, pos)
    memform = out.has_modrm and out.mod != 3 and not (e.attrs & AT_REG_ONLY)
    if (e.attrs & AT_MEM_ONLY) and not memform:
        return _fail(out, ST_INVALID, pos)
    # LOCK is #UD unless the instruction is lock-able AND its destination
    # is memory (SDM Vol. 2 "LOCK").
    if out.lock and not ((e.attrs & AT_LOCK) and memform):
        return _fail(out, ST_INVALID, pos)

    # -- stages 4, 5: SIB and displacement.
    if memform:
        st = _modrm_memory(buf, avail, &pos, out)
        if st:
            return _fail(out, st, pos)

    # -- stage 6: immediates.
    st = _immediates(buf, avail, &pos, e.imm, e.attrs, out)
    if st:
        return _fail(out, st, pos)

    out.length = pos
    out.status = e.status
    out.flow = e.flow
    out.sens = e.sens
    out.priv = e.priv
    out.attrs = e.attrs
    out.opsize = 8 if e.attrs & AT_BYTE else out.eff_opsize
    if e.attrs & AT_XLAT:
        # XLAT reads [eBX + AL] through DS (overridable).
        out.mem_seg = out.seg if out.seg != SEG_NONE else SEG_DS
    if e.imm == IM_JB or e.imm == IM_JZ:
        # EIP of the next instruction plus rel, truncated to the operand
        # size: with a 16-bit operand size the upper half of EIP is cleared.
        out.target = (address + pos + <uint32_t>out.rel) & _mask(out.eff_opsize)
    if e.status == ST_OK:
        _operands(e, out)
    return out.status


# ---------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------

MemOperand = namedtuple("MemOperand",
                        "base index scale disp disp_size disp_offset segment")
MemOperand.__doc__ = "A ModRM/moffs memory operand; registers by name."

_GPR_NAMES = {
    RC_GPR8: ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"),
    RC_GPR16: ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di"),
    RC_GPR32: ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"),
    RC_SEG: ("es", "cs", "ss", "ds", "fs", "gs", "seg6", "seg7"),
    RC_CR: tuple(f"cr{i}" for i in range(8)),
    RC_DR: tuple(f"dr{i}" for i in range(8)),
    RC_ST: tuple(f"st({i})" for i in range(8)),
}


def reg_name(int reg):
    """Name of a register id ((class << 3) | number), or None."""
    if reg == REG_NONE:
        return None
    return _GPR_NAMES[reg >> 3][reg & 7]


def seg_name(int seg):
    return None if seg == SEG_NONE else _opc.SEG_NAMES[seg]


def entry_info(int index):
    """The opcodes.Op behind a decoded instruction's `entry` index."""
    return _ENTRY_OPS[index]


def entry_count():
    return len(_ENTRY_OPS)


# Enum members by value: the properties below index these instead of calling
# the enum class (which costs a Python call per access on the translator's path).
_STATUS_OF = {m.value: m for m in _opc.Status}
_FLOW_OF = {m.value: m for m in _opc.Flow}
_SENS_OF = {m.value: m for m in _opc.Sens}
_PRIV_OF = {m.value: m for m in _opc.Priv}


cdef class Instruction:
    """Read-only Python view of one decoded Insn."""
    cdef Insn insn
    cdef readonly bytes raw        # the instruction bytes (length of them)
    cdef readonly unsigned int address
    cdef readonly int mode

    @property
    def status(self):
        return _STATUS_OF[self.insn.status]
    @property
    def ok(self):
        return self.insn.status == ST_OK
    @property
    def length(self):
        return self.insn.length
    @property
    def mnemonic(self):
        if self.insn.status not in (ST_OK, ST_UNSUPPORTED):
            return "(bad)"
        e = _ENTRY_OPS[self.insn.entry]
        if e.kind == _opc.Kind.INSN and self.insn.opmap == 1 and \
                0xD8 <= self.insn.opcode <= 0xDF and self.insn.mod == 3:
            return _opc.X87_NAMES.get((self.insn.opcode, self.insn.modrm),
                                      e.mnemonic)
        return _opc.mnemonic_for(e, self.insn.eff_opsize, self.insn.addrsize)
    @property
    def entry(self):
        return _ENTRY_OPS[self.insn.entry]
    @property
    def entry_index(self):
        return self.insn.entry
    @property
    def prefixes(self):
        return self.insn.prefixes
    @property
    def nprefixes(self):
        return self.insn.nprefixes
    @property
    def segment(self):
        """The segment override prefix in effect (last one wins), or None."""
        return seg_name(self.insn.seg)
    @property
    def lock(self):
        return bool(self.insn.lock)
    @property
    def rep(self):
        return (None, "rep", "repne")[self.insn.rep]
    @property
    def opsize(self):
        return self.insn.opsize
    @property
    def eff_opsize(self):
        return self.insn.eff_opsize
    @property
    def addrsize(self):
        return self.insn.addrsize
    @property
    def opmap(self):
        return self.insn.opmap
    @property
    def opcode(self):
        return self.insn.opcode
    @property
    def modrm(self):
        return self.insn.modrm if self.insn.has_modrm else None
    @property
    def mod(self):
        return self.insn.mod if self.insn.has_modrm else None
    @property
    def reg(self):
        return self.insn.reg if self.insn.has_modrm else None
    @property
    def rm(self):
        return self.insn.rm if self.insn.has_modrm else None
    @property
    def sib(self):
        return self.insn.sib if self.insn.has_sib else None
    @property
    def mem(self):
        if not self.insn.has_mem:
            return None
        i = &self.insn
        return MemOperand(reg_name(i.mem_base), reg_name(i.mem_index),
                          i.mem_scale, i.disp, i.disp_size,
                          i.disp_off if i.disp_size else None,
                          seg_name(i.mem_seg))
    @property
    def operands(self):
        """Tuple of (type, register-name-or-None, size-in-bits)."""
        names = ("none", "reg", "mem", "imm", "rel", "far", "str_src",
                 "str_dst")
        return tuple((names[self.insn.ops[k].type],
                      reg_name(self.insn.ops[k].reg), self.insn.ops[k].size)
                     for k in range(self.insn.nops))
    @property
    def imm(self):
        return self.insn.imm if self.insn.imm_size else None
    @property
    def imm_size(self):
        return self.insn.imm_size
    @property
    def imm_offset(self):
        return self.insn.imm_off if self.insn.imm_size else None
    @property
    def imm2(self):
        return self.insn.imm2 if self.insn.imm2_size else None
    @property
    def imm2_size(self):
        return self.insn.imm2_size
    @property
    def imm2_offset(self):
        return self.insn.imm2_off if self.insn.imm2_size else None
    @property
    def flow(self):
        return _FLOW_OF[self.insn.flow]
    @property
    def sensitive(self):
        return _SENS_OF[self.insn.sens]
    @property
    def priv(self):
        return _PRIV_OF[self.insn.priv]
    @property
    def privileged(self):
        """True when the instruction needs CPL 0 unconditionally."""
        return self.insn.priv == PV_CPL0
    @property
    def attrs(self):
        return self.insn.attrs
    @property
    def uses_stack(self):
        return bool(self.insn.attrs & AT_STACK)
    @property
    def is_string(self):
        return bool(self.insn.attrs & AT_STRING)
    @property
    def lockable(self):
        return bool(self.insn.attrs & AT_LOCK)
    @property
    def repable(self):
        return bool(self.insn.attrs & (AT_REP | AT_REPZ))
    @property
    def ends_unit(self):
        return self.insn.flow != FL_NONE
    @property
    def rel(self):
        if self.insn.flow in (FL_JCC, FL_JMP, FL_CALL, FL_LOOP, FL_JCXZ):
            return self.insn.rel
        return None
    @property
    def target(self):
        """Absolute branch target (EIP/IP) of a relative branch, else None."""
        if self.insn.flow in (FL_JCC, FL_JMP, FL_CALL, FL_LOOP, FL_JCXZ):
            return self.insn.target
        return None
    @property
    def far_target(self):
        """(selector, offset) of a direct far JMP/CALL, else None."""
        if self.insn.flow in (FL_JMPF, FL_CALLF):
            return (self.insn.far_sel, self.insn.far_off)
        return None

    def __repr__(self):
        st = self.insn.status
        if st not in (ST_OK, ST_UNSUPPORTED):
            return (f"<Instruction {self.address:#x} {_opc.Status(st).name}"
                    f" after {self.insn.length} bytes: {self.raw.hex()}>")
        parts = [f"<Instruction {self.address:#x} {self.raw.hex()}"]
        pre = []
        if self.insn.lock:
            pre.append("lock")
        if self.insn.rep and self.insn.attrs & (AT_REP | AT_REPZ):
            pre.append(self.rep)
        parts.append(" ".join(pre + [self.mnemonic]))
        if self.insn.has_mem:
            m = self.mem
            addr = "+".join(t for t in (m.base, f"{m.index}*{m.scale}"
                                        if m.index else None) if t)
            if m.disp_size or not addr:
                if addr and m.disp < 0:
                    addr += f"-{-m.disp:#x}"
                else:
                    addr += ("+" if addr else "") + f"{m.disp:#x}"
            parts.append(f"{m.segment}:[{addr}]")
        if self.imm is not None:
            parts.append(f"imm={self.imm:#x}")
        if self.target is not None:
            parts.append(f"-> {self.target:#x}")
        if self.far_target is not None:
            parts.append(f"-> {self.far_target[0]:#06x}:"
                         f"{self.far_target[1]:#x}")
        if self.insn.flow:
            parts.append(f"flow={self.flow.name}")
        if self.insn.sens:
            parts.append(f"sens={self.sensitive.name}")
        if st == ST_UNSUPPORTED:
            parts.append("UNSUPPORTED")
        return " ".join(parts) + ">"


cdef Instruction _wrap(const Insn* insn, const uint8_t* p, uint32_t address,
                       int mode):
    cdef Instruction ins = Instruction.__new__(Instruction)
    ins.insn = insn[0]
    ins.raw = p[:insn.length]
    ins.address = address
    ins.mode = mode
    return ins


cdef inline bint _mode32(int mode) except -1:
    if mode == 32:
        return True
    if mode == 16:
        return False
    raise ValueError(f"mode must be 16 or 32, not {mode!r}")


def decode(bytes code, unsigned int address=0, int mode=32):
    """Decode the instruction at the start of `code` (mode 16 or 32)."""
    cdef Insn insn
    cdef bint m32 = _mode32(mode)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(code)
    decode_insn(p, PyBytes_GET_SIZE(code), address, m32, &insn)
    return _wrap(&insn, p, address, mode)


def decode_all(bytes code, unsigned int address=0, int mode=32):
    """Yield the instructions of `code` in sequence.

    Stops after the first instruction whose status is INVALID, TOO_LONG or
    TRUNCATED (that one is yielded too, so the caller sees why it stopped).
    """
    cdef Insn insn
    cdef bint m32 = _mode32(mode)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(code)
    cdef size_t n = PyBytes_GET_SIZE(code), off = 0
    while off < n:
        decode_insn(p + off, n - off, address + off, m32, &insn)
        yield _wrap(&insn, p + off, <uint32_t>(address + off), mode)
        if insn.status != ST_OK and insn.status != ST_UNSUPPORTED:
            return
        off += insn.length


def scan(bytes code, int mode=32, int repeat=1):
    """Decode all of `code` in C, `repeat` times; skip 1 byte after a failure.

    Returns (instructions decoded OK or UNSUPPORTED, failures) per pass; used
    by the benchmark in docs/decoder.md and by the fuzz tests.
    """
    cdef Insn insn
    cdef bint m32 = _mode32(mode)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(code)
    cdef size_t n = PyBytes_GET_SIZE(code), off
    cdef long good = 0, bad = 0
    cdef int r
    with nogil:
        for r in range(repeat):
            good = 0
            bad = 0
            off = 0
            while off < n:
                decode_insn(p + off, n - off, <uint32_t>off, m32, &insn)
                if insn.status == ST_OK or insn.status == ST_UNSUPPORTED:
                    good += 1
                    off += insn.length
                else:
                    bad += 1
                    off += 1
    return good, bad
