"""hybrid86's monitor: the virtual CPU, the DE/BT decision, world switches,
descriptor shadowing, the software MMU, interrupt virtualization and the run
loop (see docs/architecture.md).  This package also holds the command line."""

from monitor.version import __version__

__all__ = ["__version__"]
