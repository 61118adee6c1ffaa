"""Build the hybrid86 Cython extensions.

The extensions in ``_native/`` call Unicorn's C API directly on the engine the
Python binding created (``Uc._uch``).  They compile against the headers that
ship inside the ``unicorn`` and ``capstone`` wheels and link against the shared
libraries in those same wheels, so no system Unicorn is needed and nothing has
to be set in the environment at run time:

* the link records the library's soname (``libunicorn.so.2``) as DT_NEEDED;
* ``_native/__init__.py`` imports the binding first, so the dynamic loader finds
  the already-loaded library by soname and the extension shares the very same
  ``libunicorn`` instance as ``unicorn.Uc`` (checked at import time);
* an RPATH of ``$ORIGIN/../unicorn/lib`` lets the extension load on its own in
  a regular (non-editable) install as well, and the build-time wheel directory
  is added for in-place builds.

Set ``HYBRID86_DEBUG=1`` to build with bounds checks and Cython's debug checks.
"""

import glob
import os
import sys
from importlib.util import find_spec

from setuptools import Extension, setup


def wheel_paths(package):
    """Return (include_dir, lib_dir) of a wheel installed in the build env."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            f"hybrid86 build: the '{package}' wheel is not importable in the build "
            f"environment; install it first (pip install {package})."
        )
    root = list(spec.submodule_search_locations)[0]
    include, lib = os.path.join(root, "include"), os.path.join(root, "lib")
    if not os.path.isdir(include) or not os.path.isdir(lib):
        sys.exit(
            f"hybrid86 build: the installed '{package}' at {root} has no include/ "
            f"or lib/ directory; hybrid86 needs the PyPI wheel, which ships both."
        )
    return include, lib


def shared_library(lib_dir, stem):
    """The exact file name of lib<stem>.so* in a wheel's lib directory."""
    names = sorted(glob.glob(os.path.join(lib_dir, f"lib{stem}.so*")))
    if not names:
        sys.exit(f"hybrid86 build: no lib{stem}.so* in {lib_dir}")
    return os.path.basename(names[0])


UC_INC, UC_LIB = wheel_paths("unicorn")
CS_INC, CS_LIB = wheel_paths("capstone")
DEBUG = os.environ.get("HYBRID86_DEBUG", "") not in ("", "0")


def native_extension(name, source, link_unicorn=False, link_capstone=False):
    include_dirs, library_dirs, rpath, link_args = [], [], [], []
    if link_unicorn:
        include_dirs.append(UC_INC)
        library_dirs.append(UC_LIB)
        rpath += ["$ORIGIN/../unicorn/lib", UC_LIB]
        link_args.append("-l:" + shared_library(UC_LIB, "unicorn"))
    if link_capstone:
        include_dirs.append(CS_INC)
        library_dirs.append(CS_LIB)
        rpath += ["$ORIGIN/../capstone/lib", CS_LIB]
        link_args.append("-l:" + shared_library(CS_LIB, "capstone"))
    return Extension(
        name,
        [source],
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        runtime_library_dirs=rpath,
        extra_link_args=link_args,
        extra_compile_args=["-O2"] + (["-g", "-O0"] if DEBUG else []),
    )


def extensions():
    exts = []
    for src in sorted(glob.glob("_native/*.pyx")):
        stem = os.path.splitext(os.path.basename(src))[0]
        exts.append(native_extension(f"_native.{stem}", src, link_unicorn=True))
    for src in sorted(glob.glob("bt/*.pyx")):
        stem = os.path.splitext(os.path.basename(src))[0]
        exts.append(native_extension(f"bt.{stem}", src))
    from Cython.Build import cythonize

    return cythonize(
        exts,
        language_level=3,
        compile_time_env={"HYBRID86_DEBUG": DEBUG},
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "cdivision": True,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions())
