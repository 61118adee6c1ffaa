"""Linux guests: the x86 boot protocol for direct kernel boot (``bootproto``),
the cpio newc format (``cpio``) and the kernel + busybox initramfs builder
behind ``hybrid86 guest linux`` (``guest``).  docs/linux-boot.md."""

from .bootproto import LinuxBoot, LinuxBootError, SetupHeader, parse_header, plan, prepare

__all__ = ["LinuxBoot", "LinuxBootError", "SetupHeader", "parse_header", "plan", "prepare"]
