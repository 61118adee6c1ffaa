"""National Semiconductor PC16550D UART (COM1 at 0x3F8 / IRQ4, COM2 at 0x2F8 / IRQ3).

Reference: National Semiconductor PC16550D "Universal Asynchronous
Receiver/Transmitter with FIFOs" data sheet (June 1995), tables I-IV; the PC
wiring (OUT2 enables the IRQ driver) from the IBM PC/AT Technical Reference.

Emulated: RBR/THR, IER, IIR with the four interrupt priorities (line status >
received data / character time-out > THR empty > modem status) and the rule
that reading IIR clears a THRE interrupt it reports, FCR with 16-byte
receive FIFO, FIFO reset and the 1/4/8/14 trigger levels, the character
time-out interrupt (4 character times of the current baud rate and frame
format, on the virtual clock), LCR with DLAB and the divisor latch, MCR with
loopback (TX fed back to RX, DTR/RTS/OUT1/OUT2 to DSR/CTS/RI/DCD) and OUT2
gating the IRQ line, LSR (DR, OE, BI, THRE, TEMT), MSR with its delta bits
(TERI on the trailing edge of RI), and SCR.

Transmission is instantaneous: a byte written to THR goes to the host
``write`` callback at once, so THRE and TEMT never drop and the THRE
interrupt re-asserts immediately after each write.  Reception is
instantaneous too: ``feed()`` puts bytes into the receive FIFO at once;
bytes that do not fit set OE and are lost, exactly like a line whose sender
ignores flow control; ``rx_room()`` lets the host pace its input.

Not emulated: parity and framing errors (no line to corrupt), the transmit
FIFO's timing, DMA mode signalling (FCR bit 3, TXRDY/RXRDY pins).  In
loopback the IRQ output stays off, because the OUT2 pin is forced inactive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .base import Device, DeviceState, no_irq
from .clock import NS_PER_SEC, TimerHandle, VirtualClock

COM1_BASE, COM1_IRQ = 0x3F8, 4
COM2_BASE, COM2_IRQ = 0x2F8, 3
UART_CLOCK_HZ = 1_843_200  # crystal; baud = clock / (16 * divisor)
FIFO_SIZE = 16

# --- register offsets -----------------------------------------------------------------
REG_RBR_THR_DLL = 0   # RBR (read) / THR (write) / DLL when DLAB=1
REG_IER_DLM = 1       # IER / DLM when DLAB=1
REG_IIR_FCR = 2       # IIR (read) / FCR (write)
REG_LCR = 3
REG_MCR = 4
REG_LSR = 5
REG_MSR = 6
REG_SCR = 7

# --- IER ----------------------------------------------------------------------------------
IER_ERBFI = 0x01  # received data available (and character time-out)
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04   # receiver line status
IER_EDSSI = 0x08  # modem status
IER_MASK = 0x0F

# --- IIR ------------------------------------------------------------------------------------
IIR_NO_INT = 0x01       # bit 0 = 1: no interrupt pending
IIR_MSR = 0x00          # priority 4: modem status
IIR_THRE = 0x02         # priority 3: THR empty
IIR_RDA = 0x04          # priority 2: received data available
IIR_RLS = 0x06          # priority 1: receiver line status
IIR_TIMEOUT = 0x0C      # priority 2: character time-out (FIFO mode)
IIR_FIFO_ENABLED = 0xC0 # bits 7-6 set when FCR bit 0 is set

# --- FCR -------------------------------------------------------------------------------------
FCR_ENABLE = 0x01       # enable both FIFOs (changing it clears them)
FCR_CLEAR_RX = 0x02     # reset the receive FIFO (self-clearing)
FCR_CLEAR_TX = 0x04     # reset the transmit FIFO (self-clearing)
FCR_DMA_MODE = 0x08     # RXRDY/TXRDY mode (pins not emulated)
FCR_TRIGGER_SHIFT = 6   # bits 7-6: receive trigger level
FIFO_TRIGGERS = (1, 4, 8, 14)

# --- LCR -----------------------------------------------------------------------------------------
LCR_WORD_MASK = 0x03    # data bits - 5
LCR_STOP2 = 0x04        # 2 stop bits (1.5 with 5 data bits)
LCR_PARITY = 0x08       # parity enable
LCR_EVEN = 0x10         # even parity
LCR_STICK = 0x20        # stick parity
LCR_BREAK = 0x40        # set break
LCR_DLAB = 0x80         # divisor latch access

# --- MCR -------------------------------------------------------------------------------------------
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08         # on a PC: enables the IRQ line driver
MCR_LOOP = 0x10         # local loopback
MCR_MASK = 0x1F

# --- LSR -------------------------------------------------------------------------------------------
LSR_DR = 0x01           # data ready
LSR_OE = 0x02           # overrun error
LSR_PE = 0x04           # parity error
LSR_FE = 0x08           # framing error
LSR_BI = 0x10           # break interrupt
LSR_THRE = 0x20         # THR (or TX FIFO) empty
LSR_TEMT = 0x40         # transmitter empty (THR and shift register)
LSR_FIFO_ERR = 0x80     # an error byte is in the RX FIFO
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI

# --- MSR -------------------------------------------------------------------------------------------
MSR_DCTS = 0x01         # CTS changed
MSR_DDSR = 0x02         # DSR changed
MSR_TERI = 0x04         # RI went from on to off
MSR_DDCD = 0x08         # DCD changed
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_DELTAS = 0x0F


@dataclass
class UartState(DeviceState):
    KIND = "uart16550"
    VERSION = 1
    rx_fifo: bytes                # received bytes not yet read (oldest first)
    ier: int                      # interrupt enable register
    lcr: int                      # line control register
    mcr: int                      # modem control register
    scr: int                      # scratch register
    dll: int                      # divisor latch low
    dlm: int                      # divisor latch high
    fcr: int                      # FIFO control as last written (without the self-clearing bits)
    lsr_errors: int               # latched OE/PE/FE/BI
    msr_inputs: int               # external CTS/DSR/RI/DCD (bits 4-7) when not in loopback
    msr_deltas: int               # MSR bits 0-3
    thre_pending: bool            # THR-empty interrupt pending
    timeout_pending: bool         # character time-out interrupt pending
    timeout_deadline_ns: Optional[int]  # when the time-out fires, if armed
    irq_level: bool               # level driven on the IRQ line


class Uart16550(Device):
    name = "uart"

    def __init__(
        self,
        clock: VirtualClock,
        irq: Callable[[bool], None] = no_irq,
        write: Optional[Callable[[bytes], None]] = None,
        base: int = COM1_BASE,
        name: str = "uart",
    ) -> None:
        self.name = name
        super().__init__()
        self.clock = clock
        self.base = base
        self._irq = irq
        self._write = write
        self._timer: Optional[TimerHandle] = None
        #: Bytes transmitted and received (statistics).
        self.tx_count = 0
        self.rx_count = 0
        self.overruns = 0
        self.reset()

    def port_ranges(self):
        return [(self, self.base, 8)]

    # -- derived state ---------------------------------------------------------------

    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    def trigger_level(self) -> int:
        return FIFO_TRIGGERS[self.fcr >> FCR_TRIGGER_SHIFT] if self.fifo_enabled else 1

    def divisor(self) -> int:
        return (self.dlm << 8) | self.dll

    def baud(self) -> float:
        return UART_CLOCK_HZ / (16 * (self.divisor() or 0x10000))

    def char_time_ns(self) -> int:
        """Duration of one frame (start, data, parity, stop bits) on the line."""
        bits = 1 + 5 + (self.lcr & LCR_WORD_MASK) + (1 if self.lcr & LCR_PARITY else 0)
        bits += 2 if self.lcr & LCR_STOP2 else 1
        return bits * 16 * (self.divisor() or 0x10000) * NS_PER_SEC // UART_CLOCK_HZ

    def msr_status(self) -> int:
        """MSR bits 4-7: external inputs, or the MCR outputs in loopback."""
        if self.mcr & MCR_LOOP:
            m = self.mcr
            return ((MSR_CTS if m & MCR_RTS else 0) | (MSR_DSR if m & MCR_DTR else 0)
                    | (MSR_RI if m & MCR_OUT1 else 0) | (MSR_DCD if m & MCR_OUT2 else 0))
        return self.msr_inputs

    def lsr(self) -> int:
        value = LSR_THRE | LSR_TEMT | self.lsr_errors
        if self.rx_fifo:
            value |= LSR_DR
        return value

    def iir(self) -> int:
        """Highest-priority pending interrupt (data sheet table IV)."""
        ier = self.ier
        if ier & IER_ELSI and self.lsr_errors:
            ident = IIR_RLS
        elif ier & IER_ERBFI and len(self.rx_fifo) >= self.trigger_level():
            ident = IIR_RDA
        elif ier & IER_ERBFI and self.timeout_pending:
            ident = IIR_TIMEOUT
        elif ier & IER_ETBEI and self.thre_pending:
            ident = IIR_THRE
        elif ier & IER_EDSSI and self.msr_deltas:
            ident = IIR_MSR
        else:
            ident = IIR_NO_INT
        return ident | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)

    def _update_irq(self) -> None:
        # The INTR pin reaches the ISA IRQ only through the OUT2-enabled
        # driver; loopback forces the OUT2 pin inactive.
        intr = not self.iir() & IIR_NO_INT
        level = intr and bool(self.mcr & MCR_OUT2) and not self.mcr & MCR_LOOP
        if level != self.irq_level:
            self.irq_level = level
            self._irq(level)

    # -- receive path ---------------------------------------------------------------------

    def _receive(self, byte: int) -> None:
        self.rx_count += 1
        capacity = FIFO_SIZE if self.fifo_enabled else 1
        if len(self.rx_fifo) < capacity:
            self.rx_fifo.append(byte)
        else:
            # Overrun.  FIFO mode: the new character (in the shift register)
            # is lost.  16450 mode: it overwrites the unread RBR.
            self.overruns += 1
            self.lsr_errors |= LSR_OE
            if not self.fifo_enabled:
                self.rx_fifo[-1] = byte
        self.timeout_pending = False
        self._arm_timeout()

    def _arm_timeout(self) -> None:
        """Restart the character time-out: 4 character times after the last
        receive or read while the FIFO holds data (FIFO mode only)."""
        self.clock.cancel(self._timer)
        self._timer = None
        self.timeout_deadline_ns = None
        if self.fifo_enabled and self.rx_fifo:
            self.timeout_deadline_ns = self.clock.now_ns + 4 * self.char_time_ns()
            self._timer = self.clock.schedule(self.timeout_deadline_ns, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        self.timeout_deadline_ns = None
        if self.rx_fifo:
            self.timeout_pending = True
            self._update_irq()

    def feed(self, data: bytes) -> int:
        """Bytes arriving on the line (host -> guest); returns how many were
        lost to overrun."""
        before = self.overruns
        for byte in bytes(data):
            self._receive(byte)
        self._update_irq()
        return self.overruns - before

    def rx_room(self) -> int:
        """Bytes the receiver can take now without overrun."""
        return (FIFO_SIZE if self.fifo_enabled else 1) - len(self.rx_fifo)

    def set_modem_inputs(
        self, cts: Optional[bool] = None, dsr: Optional[bool] = None,
        ri: Optional[bool] = None, dcd: Optional[bool] = None,
    ) -> None:
        """Host side of the modem lines (ignored by the guest in loopback)."""
        new = self.msr_inputs
        for bit, level in ((MSR_CTS, cts), (MSR_DSR, dsr), (MSR_RI, ri), (MSR_DCD, dcd)):
            if level is not None:
                new = (new | bit) if level else (new & ~bit)
        if not self.mcr & MCR_LOOP:
            self._modem_deltas(self.msr_inputs, new)
        self.msr_inputs = new
        self._update_irq()

    def _modem_deltas(self, old: int, new: int) -> None:
        changed = old ^ new
        if changed & MSR_CTS:
            self.msr_deltas |= MSR_DCTS
        if changed & MSR_DSR:
            self.msr_deltas |= MSR_DDSR
        if changed & MSR_DCD:
            self.msr_deltas |= MSR_DDCD
        if old & MSR_RI and not new & MSR_RI:
            self.msr_deltas |= MSR_TERI

    # -- ports ---------------------------------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == REG_RBR_THR_DLL:
            if dlab:
                return self.dll
            value = self.rx_fifo.pop(0) if self.rx_fifo else 0
            # Reading resets the time-out (and clears its indication).
            self.timeout_pending = False
            self._arm_timeout()
            self._update_irq()
            return value
        if offset == REG_IER_DLM:
            return self.dlm if dlab else self.ier
        if offset == REG_IIR_FCR:
            value = self.iir()
            if value & 0x0F == IIR_THRE:
                # Reading IIR while it reports THRE clears that interrupt.
                self.thre_pending = False
                self._update_irq()
            return value
        if offset == REG_LCR:
            return self.lcr
        if offset == REG_MCR:
            return self.mcr
        if offset == REG_LSR:
            value = self.lsr()
            self.lsr_errors = 0  # OE/PE/FE/BI clear on read
            self._update_irq()
            return value
        if offset == REG_MSR:
            value = self.msr_status() | self.msr_deltas
            self.msr_deltas = 0
            self._update_irq()
            return value
        return self.scr

    def io_write(self, offset: int, size: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if offset == REG_RBR_THR_DLL:
            if dlab:
                self.dll = value
            else:
                self._transmit(value)
        elif offset == REG_IER_DLM:
            if dlab:
                self.dlm = value
            else:
                old = self.ier
                self.ier = value & IER_MASK
                if self.ier & IER_ETBEI and not old & IER_ETBEI:
                    # Enabling the THRE interrupt with THR already empty
                    # raises it at once (drivers test for exactly this).
                    self.thre_pending = True
        elif offset == REG_IIR_FCR:
            self._write_fcr(value)
        elif offset == REG_LCR:
            self.lcr = value
            if value & LCR_BREAK:
                self.oddity("break transmitted (not sent to the host)")
        elif offset == REG_MCR:
            old_status = self.msr_status()
            self.mcr = value & MCR_MASK
            # In loopback the modem inputs follow the outputs, so an MCR write
            # can change them (and set their delta bits).
            self._modem_deltas(old_status, self.msr_status())
        elif offset == REG_LSR:
            self.oddity("write to LSR (factory test only)")
        elif offset == REG_MSR:
            self.oddity("write to MSR")
        else:
            self.scr = value
        self._update_irq()

    def _transmit(self, byte: int) -> None:
        self.thre_pending = False  # writing THR clears the THRE interrupt...
        self.tx_count += 1
        if self.mcr & MCR_LOOP:
            self._receive(byte)    # loopback: the shift register feeds RX
        elif self._write is not None:
            self._write(bytes((byte,)))
        self.thre_pending = True   # ...and the instantaneous line empties it again

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_ENABLE:
            # Enabling or disabling the FIFOs clears them.
            self.rx_fifo.clear()
            self.timeout_pending = False
        if value & FCR_CLEAR_RX:
            self.rx_fifo.clear()
            self.timeout_pending = False
        if value & FCR_DMA_MODE:
            self.oddity("FCR DMA mode (RXRDY/TXRDY pins)")
        self.fcr = value & (FCR_ENABLE | FCR_DMA_MODE | (3 << FCR_TRIGGER_SHIFT))
        if not self.fcr & FCR_ENABLE:
            self.fcr = 0
        self._arm_timeout()

    # -- lifecycle -----------------------------------------------------------------------

    def reset(self) -> None:
        # Master reset (data sheet table II): IER, IIR, FCR, LCR, MCR, LSR
        # (except THRE/TEMT) and the MSR deltas cleared; divisor and SCR
        # are not affected by the MR pin but start at 0 on power-up.
        self.clock.cancel(self._timer)
        self._timer = None
        self.rx_fifo: list[int] = []
        self.ier = self.lcr = self.mcr = self.scr = 0
        self.dll = self.dlm = 0
        self.fcr = 0
        self.lsr_errors = 0
        # A cable with nothing on the other end: CTS, DSR, DCD asserted.
        self.msr_inputs = MSR_CTS | MSR_DSR | MSR_DCD
        self.msr_deltas = 0
        self.thre_pending = False
        self.timeout_pending = False
        self.timeout_deadline_ns: Optional[int] = None
        self.irq_level = False
        self._irq(False)

    def save(self) -> UartState:
        return UartState(
            rx_fifo=bytes(self.rx_fifo), ier=self.ier, lcr=self.lcr, mcr=self.mcr,
            scr=self.scr, dll=self.dll, dlm=self.dlm, fcr=self.fcr,
            lsr_errors=self.lsr_errors, msr_inputs=self.msr_inputs,
            msr_deltas=self.msr_deltas, thre_pending=self.thre_pending,
            timeout_pending=self.timeout_pending,
            timeout_deadline_ns=self.timeout_deadline_ns, irq_level=self.irq_level,
        )

    def restore(self, state: UartState) -> None:
        self._check_state(state, UartState)
        self.clock.cancel(self._timer)
        self._timer = None
        for name in UartState.__dataclass_fields__:
            setattr(self, name, getattr(state, name))
        self.rx_fifo = list(state.rx_fifo)
        if self.timeout_deadline_ns is not None:
            self._timer = self.clock.schedule(self.timeout_deadline_ns, self._on_timeout)
