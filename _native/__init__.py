"""hybrid86's C extension and the pure-Python twins of its functions.

Import order matters: the Unicorn binding is imported first, so that its
``libunicorn.so.2`` is already loaded when the extension's own dependency on
that soname is resolved.  The dynamic loader then hands the extension the
*same* library instance that created the engines (setup.py explains the link),
which ``check_same_library()`` verifies.

Public names:

* ``Cpu``     - the native CPU adapter (``_native.cpu.Cpu``);
* ``PyCpu``   - its pure-Python twin (``_native.cpu_py.Cpu``);
* ``calibrate`` / ``ContextLayout`` / ``CalibrationError`` - the U3/U4 layout;
* ``build_info()`` - what was built and how it links, for ``hybrid86 info``.
"""

from __future__ import annotations

import ctypes

import unicorn  # noqa: F401  (must precede the extension import, see above)
from unicorn.unicorn_py3.unicorn import uclib as _uclib

from _native.cpu_py import Cpu as PyCpu
from _native.layout import CalibrationError, ContextLayout, calibrate


class NativeBuildError(ImportError):
    """The C extension is missing or linked to a different libunicorn."""


try:
    from _native import cpu as _cpu_ext
except ImportError as exc:  # pragma: no cover - exercised on a broken install
    raise NativeBuildError(
        "hybrid86's C extension _native.cpu is not built or cannot load "
        f"({exc}). Reinstall with: pip install -e '.[test]'"
    ) from exc

Cpu = _cpu_ext.Cpu
from _native.blocks import BlockCounter  # noqa: E402
from _native.blocks_py import BlockCounter as PyBlockCounter  # noqa: E402
from _native.mmu import NativeMMU  # noqa: E402  (after the library check's import order)
from _native.ram import GuestRam  # noqa: E402
from _native.ram_py import GuestRam as PyGuestRam  # noqa: E402


def binding_library_address() -> int:
    """Address of uc_version in the libunicorn the Python binding loaded."""
    return ctypes.cast(_uclib.uc_version, ctypes.c_void_p).value


def check_same_library() -> None:
    ours, theirs = _cpu_ext.library_address(), binding_library_address()
    if ours != theirs:
        raise NativeBuildError(
            "the C extension and the unicorn binding use two different copies of "
            f"libunicorn (uc_version at {ours:#x} vs {theirs:#x}); engines cannot "
            "be shared. Rebuild hybrid86 in the environment that runs it."
        )


check_same_library()


def build_info() -> dict:
    """Versions and link facts of the extension, for `hybrid86 info`."""
    from importlib.metadata import version

    import capstone

    major, minor = ctypes.c_int(), ctypes.c_int()
    combined = _uclib.uc_version(ctypes.byref(major), ctypes.byref(minor))
    cs_major, cs_minor = capstone.cs_version()[:2]
    return {
        "unicorn_binding": unicorn.__version__,
        "unicorn_library": f"{major.value}.{minor.value} ({combined:#x})",
        "capstone_binding": version("capstone"),
        "capstone_library": f"{cs_major}.{cs_minor}",
        "extension": _cpu_ext.__file__,
        "same_libunicorn": _cpu_ext.library_address() == binding_library_address(),
    }


__all__ = [
    "Cpu",
    "PyCpu",
    "NativeMMU",
    "BlockCounter",
    "PyBlockCounter",
    "GuestRam",
    "PyGuestRam",
    "CalibrationError",
    "ContextLayout",
    "NativeBuildError",
    "build_info",
    "calibrate",
    "check_same_library",
]
