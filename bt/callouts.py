"""Callout records: what translated code asks the monitor to do.

A callout site in the TC is `int3; dd index`.  The record at `index` says what
the guest instruction was and where to continue.  Kinds are counted by name in
the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Kind(IntEnum):
    CHAIN = 0         # continuation stub: translate the target, patch the stub
    SEG_LOAD = 1      # mov sreg / pop sreg / lds les lfs lgs lss
    SEG_READ = 2      # segment read with a memory destination
    RET = 4           # ret / ret imm16
    RETF = 5          # retf / retf imm16
    IRET = 6
    JMP_IND = 7       # jmp r/m
    CALL_IND = 8      # call r/m
    JMPF = 9          # jmp ptr16:16 / jmp m16:16
    CALLF = 10        # call ptr16:16 / call m16:16
    INT = 11          # int n / int3 / into
    HLT = 12
    BIOS = 13         # the BIOS callout 0F 0B nn in the ROM
    SYSREG = 14       # lgdt lidt sgdt sidt smsw lmsw mov crN ... in real mode
    CPUID = 15
    MSR = 16
    UD = 17           # invalid opcode: deliver #UD
    LOOKUP_MISS = 18  # ret / indirect jmp / call whose target has no landing pad yet
    STALE = 19        # a checked unit found its guest bytes changed: retranslate
    FLAGS = 20        # cli sti pushf popf at guest CPL > 0 (protected mode)
    IO = 21           # in/out at guest CPL > 0: the monitor checks IOPL and the TSS bitmap (U7)
    SYS = 22          # sysenter / sysexit
    PM_LOOKUP_MISS = 23  # protected-mode ret / indirect branch without a landing pad


@dataclass
class Callout:
    kind: Kind
    cs: int                 # guest CS of the unit
    ip: int                 # guest IP of the instruction
    next_ip: int            # guest IP after it
    insn: object = None     # the decoded instruction (bt.decoder.Instruction)
    target: int = 0         # CHAIN: guest target IP
    site: int = 0           # linear TC address of the int3
    resume: int = 0         # TC address to continue at (the next translated instruction)
    service: int = 0        # BIOS: service byte


class CalloutTable:
    def __init__(self):
        self.records: list[Callout] = []

    def add(self, record: Callout) -> int:
        self.records.append(record)
        return len(self.records) - 1

    def __getitem__(self, index: int) -> Callout:
        return self.records[index]

    def clear(self) -> None:
        self.records.clear()
