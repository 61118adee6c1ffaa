"""Intel 8259A programmable interrupt controller pair, as wired in a PC/AT.

Reference: Intel 8259A Programmable Interrupt Controller data sheet
(order no. 231468-003); the AT wiring (slave INT on master IR2, ports 0x20/0xA0)
from the IBM PC/AT Technical Reference; the edge/level control registers
(ELCR, ports 0x4D0/0x4D1) from the Intel 82371AB PIIX4 data sheet, 12.6.

Emulated: the ICW1-ICW4 initialisation sequence, OCW1 (mask), OCW2 (all EOI
and rotation commands, set priority), OCW3 (read IRR/ISR, poll, special mask
mode), edge and level triggering (ICW1.LTIM or the ELCR), auto-EOI with
rotation, special fully nested mode, cascade of the slave through master IR2
and the spurious IRQ7/IRQ15 a guest sees when a request vanishes before the
INTA cycle.

Not emulated: MCS-80/85 mode (ICW4.uPM=0, CALL-instruction vectors), buffered
mode (ICW4.BUF/M-S, no effect on a PC), more than one slave, and the 4-byte
call address interval (ICW1.ADI).  A guest that selects these is logged once.

CPU side: ``has_interrupt()`` tells the run loop whether INTR is asserted;
``acknowledge()`` performs the two INTA pulses and returns the vector.  An
optional ``on_intr(level)`` callback reports changes of INTR (to wake a
halted CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .base import Device, DeviceState, IrqLine, PortWindow

# --- ports ---------------------------------------------------------------
PIC_MASTER_BASE = 0x20
PIC_SLAVE_BASE = 0xA0
ELCR_BASE = 0x4D0

# --- ICW1 (write to the even port with bit 4 set) -------------------------
ICW1_IC4 = 0x01   # ICW4 will follow
ICW1_SNGL = 0x02  # single 8259 (no ICW3); a PC uses cascade mode (0)
ICW1_ADI = 0x04   # call address interval 4 (MCS-80 only)
ICW1_LTIM = 0x08  # level-triggered inputs (on a PC the ELCR is used instead)
ICW1_INIT = 0x10  # marks the byte as ICW1

# --- ICW4 -------------------------------------------------------------------
ICW4_UPM = 0x01   # 8086/88 mode (vectors); 0 = MCS-80/85 mode
ICW4_AEOI = 0x02  # automatic EOI at the end of the INTA sequence
ICW4_MS = 0x04    # buffered mode master/slave select (no effect here)
ICW4_BUF = 0x08   # buffered mode (no effect here)
ICW4_SFNM = 0x10  # special fully nested mode (master only)

# --- OCW2 (even port, bits 4-3 = 00) --------------------------------------
OCW2_LEVEL = 0x07          # IR level for specific commands
OCW2_CMD_SHIFT = 5         # bits 7-5 R, SL, EOI:
OCW2_ROTATE_AEOI_CLEAR = 0 # 000 clear rotate-in-automatic-EOI
OCW2_NS_EOI = 1            # 001 non-specific EOI
OCW2_NOP = 2               # 010 no operation
OCW2_SPECIFIC_EOI = 3      # 011 specific EOI
OCW2_ROTATE_AEOI_SET = 4   # 100 set rotate-in-automatic-EOI
OCW2_ROTATE_NS_EOI = 5     # 101 rotate on non-specific EOI
OCW2_SET_PRIORITY = 6      # 110 set priority (L2-L0 becomes lowest)
OCW2_ROTATE_SPECIFIC = 7   # 111 rotate on specific EOI

# --- OCW3 (even port, bits 4-3 = 01) --------------------------------------
OCW3_MARKER = 0x08  # bit 3 set, bit 4 clear: OCW3
OCW3_RIS = 0x01     # read register: 1 = ISR, 0 = IRR (if RR set)
OCW3_RR = 0x02      # read register command valid
OCW3_POLL = 0x04    # poll command: next read of the even port is an INTA
OCW3_SMM = 0x20     # special mask mode value (if ESMM set)
OCW3_ESMM = 0x40    # enable special mask mode change

# --- ELCR ---------------------------------------------------------------------
ELCR_MASTER_MASK = 0xF8  # IRQ0, 1, 2 are always edge (PIIX4)
ELCR_SLAVE_MASK = 0xDE   # IRQ8 and IRQ13 are always edge

CASCADE_IRQ = 2  # the slave's INT drives master IR2


@dataclass
class ChipState(DeviceState):
    KIND = "pic8259.chip"
    VERSION = 1
    irr: int              # interrupt request register (latched requests)
    isr: int              # in-service register
    imr: int              # interrupt mask register (OCW1)
    lines: int            # current level of the IR0-7 inputs
    priority_add: int     # IR level with the highest priority (rotation)
    vector_base: int      # ICW2 & 0xF8
    init_step: int        # 0 = ready, 1 = expecting ICW2, 2 = ICW3, 3 = ICW4
    need_icw4: bool       # ICW1.IC4
    single: bool          # ICW1.SNGL
    ltim: bool            # ICW1.LTIM: all inputs level-triggered
    icw3: int             # cascade wiring byte (informational)
    auto_eoi: bool        # ICW4.AEOI
    rotate_on_aeoi: bool  # OCW2 rotate-in-automatic-EOI mode
    sfnm: bool            # ICW4.SFNM
    read_isr: bool        # OCW3: even-port reads return ISR (else IRR)
    poll: bool            # OCW3 poll pending: next even-port read is an INTA
    special_mask: bool    # OCW3 special mask mode
    elcr: int             # edge (0) / level (1) per input, from the ELCR


@dataclass
class PicState(DeviceState):
    KIND = "pic8259"
    VERSION = 1
    master: ChipState  # ports 0x20-0x21, IRQ0-7
    slave: ChipState   # ports 0xA0-0xA1, IRQ8-15


class _Chip:
    """One 8259A.  Priorities are kept as in the data sheet: level
    ``priority_add`` is the highest, ``priority_add + 7`` (mod 8) the lowest."""

    def __init__(self, owner: "Pic8259Pair", name: str, elcr_mask: int) -> None:
        self.owner = owner
        self.name = name
        self.elcr_mask = elcr_mask
        self.elcr = 0
        self.reset_chip()

    def reset_chip(self) -> None:
        self.irr = self.isr = self.imr = 0
        self.lines = 0
        self.priority_add = 0
        self.vector_base = 0
        self.init_step = 0
        self.need_icw4 = False
        self.single = False
        self.ltim = False
        self.icw3 = 0
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.sfnm = False
        self.read_isr = False
        self.poll = False
        self.special_mask = False

    # -- priority resolution ------------------------------------------------

    def level_mask(self) -> int:
        return 0xFF if self.ltim else self.elcr

    def _priority(self, mask: int) -> int:
        """Priority rank (0 = highest) of the best bit in ``mask``; 8 if none."""
        if mask == 0:
            return 8
        rank = 0
        while not mask & (1 << ((rank + self.priority_add) & 7)):
            rank += 1
        return rank

    def pending_irq(self) -> int:
        """The IR input that would be delivered now, or -1.

        A request wins when it is unmasked and of strictly higher priority
        than every in-service level.  In special mask mode, masked in-service
        levels do not block lower ones; in special fully nested mode (master)
        an in-service IR2 does not block the slave's higher-priority
        requests.
        """
        rank = self._priority(self.irr & ~self.imr)
        if rank == 8:
            return -1
        in_service = self.isr
        if self.special_mask:
            in_service &= ~self.imr
        if self.sfnm and self is self.owner.master:
            in_service &= ~(1 << CASCADE_IRQ)
        if rank < self._priority(in_service):
            return (rank + self.priority_add) & 7
        return -1

    # -- input lines --------------------------------------------------------

    def set_line(self, irq: int, level: bool) -> None:
        bit = 1 << irq
        was = self.lines & bit
        if level:
            self.lines |= bit
            if self.level_mask() & bit:
                self.irr |= bit       # level mode: IRR follows the line
            elif not was:
                self.irr |= bit       # edge mode: latch on the rising edge
        else:
            self.lines &= ~bit
            if self.level_mask() & bit:
                self.irr &= ~bit      # level mode: request withdrawn
            # Edge mode keeps the latched request: the data sheet asks the
            # device to hold IR high until INTA, but ISA devices that pulse
            # their line (PIT mode 2) rely on the latch.

    def intack(self, irq: int) -> None:
        """The INTA cycle for ``irq``: mark in service, clear an edge request."""
        bit = 1 << irq
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.priority_add = (irq + 1) & 7
        else:
            self.isr |= bit
        if not self.level_mask() & bit:
            self.irr &= ~bit

    # -- port accesses ------------------------------------------------------

    def write(self, offset: int, value: int) -> None:
        if offset == 0:
            if value & ICW1_INIT:
                self._icw1(value)
            elif value & OCW3_MARKER:
                self._ocw3(value)
            else:
                self._ocw2(value)
        else:
            self._odd_port_write(value)
        self.owner.update()

    def _icw1(self, value: int) -> None:
        # Initialisation (data sheet "Initialization Command Words"):
        # 1. the edge-sense circuit is reset: an input already high must go
        #    low and high again to request (so ``lines`` is kept, IRR cleared);
        # 2. IMR, ISR cleared; IR7 lowest priority; special mask mode off;
        #    reads return IRR;
        # 3. ICW2 must follow, then ICW3 unless SNGL, then ICW4 if IC4.
        lines, elcr = self.lines, self.elcr
        self.reset_chip()
        self.lines, self.elcr = lines, elcr
        self.need_icw4 = bool(value & ICW1_IC4)
        self.single = bool(value & ICW1_SNGL)
        self.ltim = bool(value & ICW1_LTIM)
        if self.ltim:
            self.irr = self.lines  # level inputs request while high
        if value & ICW1_ADI:
            self.owner.oddity("ICW1 call address interval 4 (MCS-80 only)")
        if self.single:
            self.owner.oddity(f"{self.name}: ICW1 single mode on a cascaded PC PIC", loud=True)
        self.init_step = 1

    def _odd_port_write(self, value: int) -> None:
        step = self.init_step
        if step == 0:
            self.imr = value          # OCW1
        elif step == 1:
            self.vector_base = value & 0xF8  # ICW2: T7-T3 of the vector
            if not self.single:
                self.init_step = 2
            else:
                self.init_step = 3 if self.need_icw4 else 0
        elif step == 2:
            self.icw3 = value         # ICW3: slave wiring (master) / id (slave)
            self.init_step = 3 if self.need_icw4 else 0
        else:
            if not value & ICW4_UPM:
                self.owner.oddity(f"{self.name}: ICW4 MCS-80/85 mode", loud=True)
            self.auto_eoi = bool(value & ICW4_AEOI)
            self.sfnm = bool(value & ICW4_SFNM)
            self.init_step = 0

    def _ocw2(self, value: int) -> None:
        cmd = value >> OCW2_CMD_SHIFT
        level = value & OCW2_LEVEL
        if cmd in (OCW2_NS_EOI, OCW2_ROTATE_NS_EOI):
            # Non-specific EOI clears the highest-priority in-service bit.
            rank = self._priority(self.isr)
            if rank != 8:
                irq = (rank + self.priority_add) & 7
                self.isr &= ~(1 << irq)
                if cmd == OCW2_ROTATE_NS_EOI:
                    self.priority_add = (irq + 1) & 7
        elif cmd in (OCW2_SPECIFIC_EOI, OCW2_ROTATE_SPECIFIC):
            self.isr &= ~(1 << level)
            if cmd == OCW2_ROTATE_SPECIFIC:
                self.priority_add = (level + 1) & 7
        elif cmd == OCW2_SET_PRIORITY:
            self.priority_add = (level + 1) & 7
        elif cmd == OCW2_ROTATE_AEOI_SET:
            self.rotate_on_aeoi = True
        elif cmd == OCW2_ROTATE_AEOI_CLEAR:
            self.rotate_on_aeoi = False
        # OCW2_NOP: nothing.

    def _ocw3(self, value: int) -> None:
        if value & OCW3_POLL:
            self.poll = True
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)

    def read(self, offset: int) -> int:
        if self.poll:
            # Poll: the read is an interrupt acknowledge for this chip alone;
            # bit 7 says whether there was a request, bits 2-0 its level.
            self.poll = False
            irq = self.pending_irq()
            if irq < 0:
                return 0
            self.intack(irq)
            self.owner.update()
            return 0x80 | irq
        if offset == 0:
            return self.isr if self.read_isr else self.irr
        return self.imr

    def save(self) -> ChipState:
        return ChipState(
            irr=self.irr, isr=self.isr, imr=self.imr, lines=self.lines,
            priority_add=self.priority_add, vector_base=self.vector_base,
            init_step=self.init_step, need_icw4=self.need_icw4, single=self.single,
            ltim=self.ltim, icw3=self.icw3, auto_eoi=self.auto_eoi,
            rotate_on_aeoi=self.rotate_on_aeoi, sfnm=self.sfnm,
            read_isr=self.read_isr, poll=self.poll, special_mask=self.special_mask,
            elcr=self.elcr,
        )

    def restore(self, s: ChipState) -> None:
        for name in s.__dataclass_fields__:
            setattr(self, name, getattr(s, name))


class Pic8259Pair(Device):
    """Master and slave 8259A plus the ELCR, one snapshot unit ("pic")."""

    name = "pic"

    def __init__(self, on_intr: Optional[Callable[[bool], None]] = None) -> None:
        super().__init__()
        self.master = _Chip(self, "master", ELCR_MASTER_MASK)
        self.slave = _Chip(self, "slave", ELCR_SLAVE_MASK)
        self._on_intr = on_intr
        self._intr = False
        self._lines = [IrqLine(lambda level, n=n: self.set_irq(n, level), f"irq{n}") for n in range(16)]
        #: Spurious vectors delivered (IRQ7 / IRQ15 with nothing in service).
        self.spurious = 0
        self.master_ports = PortWindow("pic.master", self._master_read, self._master_write)
        self.slave_ports = PortWindow("pic.slave", self._slave_read, self._slave_write)
        self.elcr_ports = PortWindow("pic.elcr", self._elcr_read, self._elcr_write)

    def port_ranges(self):
        return [
            (self.master_ports, PIC_MASTER_BASE, 2),
            (self.slave_ports, PIC_SLAVE_BASE, 2),
            (self.elcr_ports, ELCR_BASE, 2),
        ]

    # -- device side ----------------------------------------------------------

    def irq_line(self, irq: int) -> IrqLine:
        """The callable a device drives for ISA IRQ ``irq`` (0-15)."""
        if not 0 <= irq < 16 or irq == CASCADE_IRQ:
            raise ValueError(f"IRQ {irq} is not an ISA input of the PIC pair")
        return self._lines[irq]

    def set_irq(self, irq: int, level: bool) -> None:
        if irq < 8:
            self.master.set_line(irq, level)
        else:
            self.slave.set_line(irq - 8, level)
        self.update()

    # -- CPU side --------------------------------------------------------------

    def update(self) -> None:
        """Propagate the slave's INT to master IR2 and the master's INT to INTR."""
        self.master.set_line(CASCADE_IRQ, self.slave.pending_irq() >= 0)
        intr = self.master.pending_irq() >= 0
        if intr != self._intr:
            self._intr = intr
            if self._on_intr is not None:
                self._on_intr(intr)

    def has_interrupt(self) -> bool:
        """INTR: an unmasked request beats every in-service level."""
        return self.master.pending_irq() >= 0

    def acknowledge(self) -> int:
        """The INTA sequence; returns the vector the CPU must take.

        1. The master resolves its best request and marks it in service.
        2. If that is IR2, the slave resolves and marks its own and supplies
           the vector; otherwise the master does.
        3. A request that vanished before INTA yields the spurious vector of
           level 7 (IRQ7 or IRQ15) without setting its ISR bit, so the guest
           must not send an EOI for it (but IRQ15 leaves master IR2 in
           service, which the guest acknowledges with an EOI to the master).
        """
        master, slave = self.master, self.slave
        irq = master.pending_irq()
        if irq < 0:
            self.spurious += 1
            vector = master.vector_base + 7
        else:
            master.intack(irq)
            if irq == CASCADE_IRQ:
                irq2 = slave.pending_irq()
                if irq2 >= 0:
                    slave.intack(irq2)
                else:
                    self.spurious += 1
                    irq2 = 7
                vector = slave.vector_base + irq2
            else:
                vector = master.vector_base + irq
        self.update()
        return vector

    # -- ports ------------------------------------------------------------------

    def _master_read(self, offset: int, size: int) -> int:
        return self.master.read(offset)

    def _master_write(self, offset: int, size: int, value: int) -> None:
        self.master.write(offset, value)

    def _slave_read(self, offset: int, size: int) -> int:
        return self.slave.read(offset)

    def _slave_write(self, offset: int, size: int, value: int) -> None:
        self.slave.write(offset, value)

    def _elcr_read(self, offset: int, size: int) -> int:
        return (self.master if offset == 0 else self.slave).elcr

    def _elcr_write(self, offset: int, size: int, value: int) -> None:
        chip = self.master if offset == 0 else self.slave
        chip.elcr = value & chip.elcr_mask
        # Inputs switched to level mode request at once if high; inputs
        # switched to edge keep what they latched.
        chip.irr |= chip.lines & chip.level_mask()
        self.update()

    # -- BIOS ----------------------------------------------------------------------

    def bios_init(self, master_base: int = 0x08, slave_base: int = 0x70) -> None:
        """Program the pair as the PC/AT BIOS does at POST, through the ports:
        ICW1 0x11 (edge, cascade, ICW4), ICW2 vector base, ICW3 (slave on
        IR2 / slave id 2), ICW4 0x01 (8086 mode), all inputs unmasked."""
        for write, base, icw3 in ((self._master_write, master_base, 0x04),
                                  (self._slave_write, slave_base, 0x02)):
            write(0, 1, 0x11)
            write(1, 1, base)
            write(1, 1, icw3)
            write(1, 1, 0x01)
            write(1, 1, 0x00)

    # -- lifecycle --------------------------------------------------------------

    def reset(self) -> None:
        for chip in (self.master, self.slave):
            chip.reset_chip()
            chip.elcr = 0
        self.spurious = 0
        self.update()

    def save(self) -> PicState:
        return PicState(master=self.master.save(), slave=self.slave.save())

    def restore(self, state: PicState) -> None:
        self._check_state(state, PicState)
        self.master.restore(state.master)
        self.slave.restore(state.slave)
        self._intr = self.master.pending_irq() >= 0
