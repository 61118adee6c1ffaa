"""Port I/O from BIOS services to the chips, as firmware does it.

The BIOS programs the PICs, the PIT, the VGA and the keyboard controller
through their I/O ports (absolute port numbers here), not by poking device
internals, so device state stays exactly what the same sequence from guest
code would leave.  Ports are routed to the devices in ``ctx.devices``; a
port nobody here decodes reads as a floating bus (0xFF) and swallows writes.
"""

from __future__ import annotations

COM_BASES = (0x3F8, 0x2F8, 0x3E8, 0x2E8)


def _route(devices, port: int):
    if 0x3B0 <= port <= 0x3DF:
        return devices.vga, port - 0x3B0
    if port in (0x20, 0x21):
        return devices.pic.master_ports, port - 0x20
    if port in (0xA0, 0xA1):
        return devices.pic.slave_ports, port - 0xA0
    if 0x40 <= port <= 0x43:
        return devices.pit, port - 0x40
    if port in (0x70, 0x71):
        return devices.cmos, port - 0x70
    if port == 0x60:
        return devices.kbd.data_ports, 0
    if port == 0x64:
        return devices.kbd.cmd_ports, 0
    uarts = getattr(devices, "uarts", ())
    for i, base in enumerate(COM_BASES):
        if base <= port < base + 8 and i < len(uarts) and uarts[i] is not None:
            return uarts[i], port - base
    return None, 0


def outb(ctx, port: int, value: int) -> None:
    dev, offset = _route(ctx.devices, port)
    if dev is not None:
        dev.io_write(offset, 1, value & 0xFF)


def inb(ctx, port: int) -> int:
    dev, offset = _route(ctx.devices, port)
    if dev is None:
        return 0xFF
    return dev.io_read(offset, 1) & 0xFF
