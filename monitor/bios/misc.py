"""int 05h (print screen), int 14h (serial ports), int 17h (printers).

References: Ralf Brown's Interrupt List (INT 05, INT 14, INT 17); IBM
PC/AT Technical Reference (RS232_IO, PRINTER_IO); National Semiconductor
PC16550D data sheet for the UART registers.

int 14h drives the 16550s at the COM bases in the BDA through their
ports: AH=00h initialise (baud rate, parity, stop bits, word length from
AL), 01h send, 02h receive, 03h status.  The BIOS does not wait: the
emulated UART accepts a byte at once and a receive with no byte waiting
reports a time-out (AH bit 7) immediately instead of after the BIOS's
polling loop.  The modem-control handshake (DTR/RTS, waiting for DSR/CTS)
of the IBM routines is not performed.

No parallel port is emulated: int 17h answers every printer with status
01h (time-out), and print screen (int 05h) fails with status FFh in 0x500.
"""

from __future__ import annotations

from .memory import BDA_COM_PORTS, PRINT_SCREEN_STATUS, once, rd16
from .ports import inb, outb
from . import rom

# UART register offsets and bits used here.
UART_DATA = 0
UART_IER = 1
UART_LCR = 3
UART_MCR = 4
UART_LSR = 5
UART_MSR = 6
LCR_DLAB = 0x80
LSR_DR = 0x01
LSR_THRE = 0x20
LSR_ERRORS = 0x1E
STATUS_TIMEOUT = 0x80

PRINTER_TIMEOUT = 0x01
PRINT_SCREEN_ERROR = 0xFF


def int05(ctx) -> None:
    ctx.mem[PRINT_SCREEN_STATUS] = PRINT_SCREEN_ERROR
    once(ctx, "print screen: no printer is emulated")


def _status(ctx, base: int) -> None:
    r = ctx.regs
    r.ah = inb(ctx, base + UART_LSR)
    r.al = inb(ctx, base + UART_MSR)


def int14(ctx) -> None:
    r = ctx.regs
    fn = r.ah
    base = rd16(ctx.mem, BDA_COM_PORTS + 2 * r.dx) if r.dx < 4 else 0
    if not base:
        r.ah = STATUS_TIMEOUT
        return
    if fn == 0x00:
        # AL bits 7-5 baud rate (110 ... 9600), 4-3 parity, 2 stop bits,
        # 1-0 word length: those low five bits are the 8250 LCR layout.
        divisor = rom.BAUD_DIVISORS[r.al >> 5]
        outb(ctx, base + UART_LCR, LCR_DLAB)
        outb(ctx, base + UART_DATA, divisor & 0xFF)
        outb(ctx, base + UART_IER, divisor >> 8)
        outb(ctx, base + UART_LCR, r.al & 0x1F)
        outb(ctx, base + UART_IER, 0)          # no UART interrupts
        _status(ctx, base)
    elif fn == 0x01:
        lsr = inb(ctx, base + UART_LSR)
        if lsr & LSR_THRE:
            outb(ctx, base + UART_DATA, r.al)
            r.ah = inb(ctx, base + UART_LSR) & 0x7F
        else:
            r.ah = lsr | STATUS_TIMEOUT
    elif fn == 0x02:
        lsr = inb(ctx, base + UART_LSR)
        if lsr & LSR_DR:
            r.al = inb(ctx, base + UART_DATA)
            r.ah = lsr & LSR_ERRORS
        else:
            r.ah = (lsr & LSR_ERRORS) | STATUS_TIMEOUT
    elif fn == 0x03:
        _status(ctx, base)
    else:
        once(ctx, f"int 14h AH={fn:#04x}: function not emulated")


def int17(ctx) -> None:
    r = ctx.regs
    if r.ah in (0x00, 0x01, 0x02):
        r.ah = PRINTER_TIMEOUT
        once(ctx, "int 17h: no printer is emulated (status: time-out)")
    else:
        once(ctx, f"int 17h AH={r.ah:#04x}: function not emulated")
