"""The DE/BT decision rule: which world runs the guest's next instructions.

hybrid86 has two ways of running guest code (docs/architecture.md):

* **DE**, direct execution: the guest's own instructions run on the real CPU
  (Unicorn) at real CPL 3 or in real V8086 mode, against the shadow GDT/LDT
  (monitor/shadow.py).  Whatever the hardware traps comes back to the monitor.
* **BT**, binary translation: the guest's instructions are rewritten into the
  translation cache and run at real CPL 0, with every sensitive instruction
  translated or called out.

DE is only allowed when the real CPU, running the guest's code unmodified,
would behave exactly as the guest's own CPU would, or trap.  That is VMware's
rule (Adams & Agesen, ASPLOS 2006, section 3; Bugnion et al., ACM TOCS 30(4)
2012, section 6.2), checked in this order:

====  ===========================  =====  =====================================
 #    condition                    world  why
====  ===========================  =====  =====================================
 1    ``CR0.PE = 0``               BT     real mode: segment loads, ``int`` and
                                          ``iret`` mean something a protected-
                                          mode CPU would not do (the real CPU is
                                          always in protected mode).
 2    ``EFLAGS.VM = 1``            DE     V8086: run with real VM=1 and real
                                          IOPL = guest IOPL; the CPU then traps
                                          (#GP) exactly the IOPL-sensitive
                                          instructions the guest's CPU would
                                          trap (SDM vol. 3, 20.2.7), and segment
                                          registers are always reversible
                                          (base = selector * 16).  IF, TF and
                                          segment state do not matter here, so
                                          this check comes before them.
 3    ``CPL = 0``                  BT     privileged instructions (``lgdt``,
                                          ``mov crN``, ``hlt``...) would act on
                                          the real CPU; sensitive ones (``sgdt``,
                                          ``pushf``, ``popf``...) would reveal
                                          or silently lose virtual state.
 4    ``CPL <= IOPL``              BT     ``cli sti popf in out`` would not fault
                                          (SDM vol. 1, 18.2.1; vol. 3, 6.8.1)
                                          and would act on the real IF and ports
                                          (U7: the CPU does not even check I/O
                                          permission).
 5    ``CPL in (1, 2)``            BT     DE runs guest code at real CPL 3:
                                          ring-1/2 code would see RPL 3 in
                                          ``mov r, cs`` / ``push ss`` and fail
                                          DPL checks its own CPU would pass.
                                          (Not in the brief's list, which says
                                          "otherwise CPL 3 -> DE"; VMware ran
                                          only user mode directly.)
 6    ``IF = 0``                   BT     VMware: in DE the real IF must stay 1
                                          so host interrupts reach the monitor,
                                          and ``pushf`` at CPL 3 does not trap,
                                          so a guest IF of 0 cannot be shown.
                                          On Unicorn the real IF delivers
                                          nothing (U2), so DE with real IF =
                                          guest IF would work; hybrid86 keeps
                                          VMware's rule: ring-3 code with IF=0
                                          is rare (between a kernel's ``iret``
                                          and its next ``sti``) and BT is always
                                          correct.
 7    a non-reversible segment     BT     a segment register whose hidden part
                                          no longer matches its descriptor (or
                                          that was loaded in real mode) cannot
                                          be recreated by the real CPU after a
                                          world switch (a reload reads the
                                          table); translated code uses the
                                          monitor's cached copy instead.
 8    ``TF = 1``                   BT     single-step traps must come after each
                                          guest instruction: BT with units of
                                          one instruction, the monitor raising
                                          #DB itself.
 9    otherwise (CPL 3)            DE     user code cannot tell.
====  ===========================  =====  =====================================

Precedence matters in three places, and the table test pins each of them:
real mode wins over everything (VM is meaningless with PE=0, and the guest
cannot set it there); V8086 wins over IF/TF/segments (the hardware virtualizes
those in V8086 through IOPL, and a set TF single-steps the real CPU, whose
#DB reaches the interrupt hook, U2); CPL 0 is always <= IOPL and is reported
as CPL0 (the reason names the strongest cause, for statistics).

`Decision.single_step` is independent of the reason: a BT decision taken for
any reason with TF set must still translate one instruction per unit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

EFLAGS_TF = 1 << 8
EFLAGS_IF = 1 << 9
EFLAGS_IOPL_SHIFT = 12
EFLAGS_VM = 1 << 17
CR0_PE = 1


class World(enum.Enum):
    BT = "BT"
    DE = "DE"


class Reason(enum.Enum):
    """Why `decide` chose its world; the order is the order of the checks."""
    REAL_MODE = 1
    V8086 = 2
    CPL0 = 3
    CPL_LE_IOPL = 4
    INNER_RING = 5          # CPL 1 or 2 with IOPL < CPL
    IF_CLEAR = 6
    NON_REVERSIBLE_SEGMENT = 7
    TRAP_FLAG = 8
    USER = 9


@dataclass(frozen=True)
class Decision:
    world: World
    reason: Reason
    single_step: bool = False   # BT with TF set: one guest instruction per unit

    @property
    def direct(self) -> bool:
        return self.world is World.DE


def decide(cr0_pe: bool, eflags_vm: bool, cpl: int, iopl: int, if_: bool, tf: bool,
           segments_reversible: bool) -> Decision:
    """VMware's DE/BT rule (module docstring).  Pure; all arguments are guest values.

    `cpl` is the guest's CPL (CS.RPL in protected mode; 3 in V8086; 0 in real
    mode, where it is ignored).  `segments_reversible` is True when every
    segment register's hidden part could be reloaded from the guest's tables
    (monitor.shadow.is_reversible over the six registers).
    """
    if not 0 <= cpl <= 3 or not 0 <= iopl <= 3:
        raise ValueError(f"cpl={cpl} iopl={iopl}: both must be in 0..3")
    if not cr0_pe:
        return Decision(World.BT, Reason.REAL_MODE, bool(tf))
    if eflags_vm:
        return Decision(World.DE, Reason.V8086)
    if cpl == 0:
        return Decision(World.BT, Reason.CPL0, bool(tf))
    if cpl <= iopl:
        return Decision(World.BT, Reason.CPL_LE_IOPL, bool(tf))
    if cpl != 3:
        return Decision(World.BT, Reason.INNER_RING, bool(tf))
    if not if_:
        return Decision(World.BT, Reason.IF_CLEAR, bool(tf))
    if not segments_reversible:
        return Decision(World.BT, Reason.NON_REVERSIBLE_SEGMENT, bool(tf))
    if tf:
        return Decision(World.BT, Reason.TRAP_FLAG, True)
    return Decision(World.DE, Reason.USER)


def decide_state(cr0: int, eflags: int, cpl: int, segments_reversible: bool) -> Decision:
    """`decide` from the raw guest CR0 and EFLAGS values (what the run loop holds)."""
    return decide(
        cr0_pe=bool(cr0 & CR0_PE),
        eflags_vm=bool(eflags & EFLAGS_VM),
        cpl=cpl,
        iopl=(eflags >> EFLAGS_IOPL_SHIFT) & 3,
        if_=bool(eflags & EFLAGS_IF),
        tf=bool(eflags & EFLAGS_TF),
        segments_reversible=segments_reversible,
    )


__all__ = ["World", "Reason", "Decision", "decide", "decide_state",
           "EFLAGS_TF", "EFLAGS_IF", "EFLAGS_IOPL_SHIFT", "EFLAGS_VM", "CR0_PE"]
