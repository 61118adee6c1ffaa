"""The `hybrid86` command line (also `python -m monitor`).

Subcommands:
  info    what this installation is: versions, the extension, calibrated offsets
  run     boot a guest from a floppy or hard-disk image, or a Linux kernel
  guest   build guest images (linux: kernel + busybox initramfs from Debian)
  fuzz    translator-versus-interpreter equivalence campaign
  bench   benchmarks against bare Unicorn and QEMU (not implemented yet)

A subcommand that is not implemented says so and exits with status 3; it never
pretends.  Usage errors exit with status 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from monitor.version import __version__

EXIT_NOT_IMPLEMENTED = 3
QUIT_HELP = "Ctrl-]"

DESCRIPTION = """\
hybrid86: a VMware-style hybrid x86 monitor on Unicorn. Guest ring-3 and
V8086 code runs directly on the emulated CPU; guest ring-0 and real-mode code
is binary-translated into a cache at the top of the address space."""

EPILOG = """\
examples:
  hybrid86 info                  versions, extension build, calibrated offsets
  hybrid86 info --json           the same as JSON
  hybrid86 run --fda freedos.img boot FreeDOS in this terminal (Ctrl-] quits)
  hybrid86 run --help            options for booting a guest
  hybrid86 run --kernel bzImage --initrd initrd.gz --append console=ttyS0 --serial stdio --headless
  hybrid86 guest linux --out DIR kernel + busybox initramfs from Debian's i386 packages

Documentation: docs/ in the source tree (start with docs/architecture.md)."""

# What each unimplemented subcommand is waiting for, in the project's issues.
PENDING: dict = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybrid86",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hybrid86 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser(
        "info",
        help="print versions of Unicorn and Capstone, the extension build and the "
             "calibrated context offsets",
        description="Print what this installation is: the Unicorn and Capstone "
                    "versions (binding and library), where the C extension was "
                    "loaded from and whether it shares the binding's libunicorn, "
                    "and the context-blob offsets found by calibration at start-up "
                    "(see docs/unicorn-contract.md, facts U3 and U4).",
    )
    info.add_argument("--json", action="store_true", help="print the same facts as JSON")

    run = sub.add_parser(
        "run",
        help="boot a guest from a floppy or hard-disk image (none: the built-in demo guest)",
        description="Boot a PC guest. Everything it executes, from the BIOS's reset vector "
                    "on, runs through hybrid86's binary translator (real mode). Interactive by "
                    "default: the VGA text screen in this terminal, your keys on its keyboard, "
                    f"{QUIT_HELP} to quit.",
        epilog="exit status: the value the guest writes to port 0xF4; 0 when --expect "
               "matched or you quit; 124 on --timeout; 1 when the machine stopped for another "
               "reason; 2 for bad input.\n\nexample:\n  hybrid86 run --fda freedos.img\n"
               "  hybrid86 run --fda freedos.img --headless --keys 'dir\\r' --expect 'bytes free' "
               "--screen-dump screen.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--fda", metavar="IMG", help="floppy image for drive A: (raw, 160 KiB to 2.88 MiB); "
                     "with no image at all, the built-in demo guest boots (headless, COM1 on stdout, --stats)")
    run.add_argument("--hda", metavar="IMG", help="raw hard-disk image for drive C:")
    run.add_argument("--memory", metavar="MB", type=int, help="guest memory in MiB (default 16; 128 with --kernel)")
    run.add_argument("--kernel", metavar="BZIMAGE",
                     help="boot this Linux kernel directly (x86 boot protocol 2.04+; docs/linux-boot.md): "
                          "the BIOS runs its POST, then the kernel's real-mode setup code instead of a boot sector; "
                          "--fda/--hda stay available to the guest")
    run.add_argument("--initrd", metavar="FILE", help="initial ramdisk for --kernel (loaded as high as RAM allows)")
    run.add_argument("--append", metavar="CMDLINE", help="kernel command line for --kernel, e.g. 'console=ttyS0'")
    run.add_argument("--boot", choices=("a", "c"), help="boot drive (default: a with --fda, else c)")
    run.add_argument("--writable", action="store_true",
                     help="write guest disk writes to the image files (default: kept in memory, discarded)")
    run.add_argument("--headless", action="store_true", help="no screen or keyboard; use --expect/--timeout/--keys")
    run.add_argument("--expect", metavar="TEXT",
                     help="stop with status 0 as soon as TEXT appears on the screen, the serial port or the 0xE9 console")
    run.add_argument("--timeout", metavar="SECONDS", type=float, help="stop with status 124 after this long")
    run.add_argument("--keys", metavar="TEXT",
                     help="type TEXT on the keyboard once the guest waits for input (\\r is Enter)")
    run.add_argument("--serial-keys", metavar="TEXT",
                     help="type TEXT into COM1 once the guest listens on it (\\r is Enter): a serial-console "
                          "guest's keyboard, e.g. Linux with console=ttyS0")
    run.add_argument("--serial-console", action="store_true",
                     help="the terminal is COM1, not the VGA screen (as QEMU's -nographic; the default with "
                          "--kernel): for a guest booted from a disk with console=ttyS0")
    run.add_argument("--serial-keys-after", metavar="TEXT",
                     help="type --serial-keys only once TEXT has appeared on COM1 (e.g. the shell's prompt "
                          "'/ # '): keys typed earlier may be flushed by the guest as it sets up its terminal")
    run.add_argument("--screen-dump", metavar="FILE", help="write the text screen to FILE at exit")
    run.add_argument("--debugcon", metavar="stdio|file:PATH|none", default="none",
                     help="where bytes written to port 0xE9 go (default none)")
    run.add_argument("--serial", metavar="stdio|file:PATH|none", default="none",
                     help="where COM1 output goes (default none)")
    run.add_argument("--stats", metavar="json:FILE", nargs="?", const="-",
                     help="print statistics at exit (to stderr), or write them as JSON to FILE")

    bench = sub.add_parser(
        "bench",
        help="run a benchmark and print its figures (against QEMU where installed)",
        description="Benchmarks print figures; they never pass or fail.\n\n"
                    "  boot-dos   FreeDOS boot floppy to its marker (MARKER.COM run from\n"
                    "             AUTOEXEC.BAT), whole process, hybrid86 vs qemu-system-i386\n"
                    "  modes      one workload (loops, calls, indirect calls, memory) as ring-3\n"
                    "             (DE), ring-0 and real-mode (BT) code: speed as a ratio of\n"
                    "             bare Unicorn running the same image, all in one run\n"
                    "  boot-linux Debian's i386 kernel + busybox initramfs to LINUX-BOOT-OK,\n"
                    "             whole process, hybrid86 vs qemu-system-i386, and one run's statistics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("name", choices=("boot-dos", "modes", "boot-linux"), help="which benchmark")
    bench.add_argument("--image", metavar="IMG", help="boot-dos: FreeDOS boot floppy (default "
                       "../shared/guests/freedos/freedos-boot-1440k.img); boot-linux: the folder holding "
                       "vmlinuz-6.1.0-50-686 and initramfs-busybox.cpio.gz (default ../shared/guests/linux)")
    bench.add_argument("--runs", type=int, default=5,
                       help="runs per system (modes: per code kind); the median is reported (default 5)")
    bench.add_argument("--qemu", metavar="PATH", help="qemu-system-i386 to compare with (default: from PATH)")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.add_argument("--iterations", type=int, default=200_000,
                       help="modes: workload iterations per run (default 200000)")

    guest = sub.add_parser(
        "guest",
        help="build guest images (linux: a kernel and a busybox initramfs from Debian's i386 packages; "
             "linux-disk: a bootable hard disk with SYSLINUX)",
        description="Build guest images.\n\n"
                    "  linux       download Debian's linux-image-RELEASE-686-unsigned and busybox-static\n"
                    "              (i386) with apt-get, and write vmlinuz-RELEASE-686 and\n"
                    "              initramfs-busybox.cpio.gz (an /init that prints LINUX-BOOT-OK and powers\n"
                    "              off, or starts a shell with hybrid86.shell on the command line);\n"
                    "              with --disk also DIR/linux-hd.img\n"
                    "  linux-disk  a hard-disk image (FAT, SYSLINUX) that boots --kernel and --initrd\n"
                    "              through the BIOS's int 13h: --out FILE (needs mtools and syslinux)",
        epilog="examples:\n  hybrid86 guest linux --out guests/linux\n"
               "  hybrid86 run --kernel guests/linux/vmlinuz-6.1.0-50-686 "
               "--initrd guests/linux/initramfs-busybox.cpio.gz --append console=ttyS0 --serial stdio --headless\n"
               "  hybrid86 guest linux-disk --kernel guests/linux/vmlinuz-6.1.0-50-686 "
               "--initrd guests/linux/initramfs-busybox.cpio.gz --out linux-hd.img\n"
               "  hybrid86 run --hda linux-hd.img --memory 128 --serial stdio --headless",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    guest.add_argument("kind", choices=("linux", "linux-disk"), help="which guest")
    guest.add_argument("--out", metavar="DIR|FILE",
                       help="linux: the folder for the images (default: .); linux-disk: the image file "
                            "(default: linux-hd.img)")
    guest.add_argument("--disk", action="store_true", help="linux: also write DIR/linux-hd.img (SYSLINUX)")
    guest.add_argument("--kernel", metavar="BZIMAGE", help="linux-disk: the kernel to boot")
    guest.add_argument("--initrd", metavar="FILE", help="linux-disk: the initrd to load with it")
    guest.add_argument("--append", metavar="CMDLINE", default="console=ttyS0",
                       help="linux --disk, linux-disk: the kernel command line (default console=ttyS0)")
    guest.add_argument("--release", metavar="ABI", default="6.1.0-50",
                       help="Debian kernel ABI name (default 6.1.0-50: linux-image-6.1.0-50-686-unsigned)")
    guest.add_argument("--init", metavar="FILE", help="your own /init (a #! script or a static ELF binary)")

    from monitor.fuzz import cli as fuzz_cli

    fuzz = sub.add_parser(
        "fuzz",
        help="run a translator-versus-interpreter equivalence campaign (hypothesis)",
        description="Generate guest instruction sequences and initial states, run each on the bare "
                    "emulated CPU (the reference) and through hybrid86, and compare everything the "
                    "guest can observe (docs/fuzzing.md): real mode, 16- and 32-bit ring 0, ring 3 and V8086.",
    )
    fuzz_cli.add_arguments(fuzz)
    return parser


def cmd_info(args) -> int:
    import _native

    facts = _native.build_info()
    layout = _native.calibrate()
    facts["context_layout"] = layout.as_dict()
    facts["hybrid86"] = __version__
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True))
        return 0
    print(f"hybrid86            {__version__}")
    print(f"unicorn             binding {facts['unicorn_binding']}, library {facts['unicorn_library']}")
    print(f"capstone            binding {facts['capstone_binding']}, library {facts['capstone_library']}")
    print(f"extension           {facts['extension']}")
    print(f"shared libunicorn   {'yes' if facts['same_libunicorn'] else 'NO (rebuild hybrid86)'}")
    print("context layout      (calibrated at start-up; byte offsets in uc_context)")
    for key, value in layout.as_dict().items():
        print(f"  {key:<18}{value}")
    return 0


def cmd_run(args) -> int:
    from monitor.runner import RunError, Runner, write_statistics

    try:
        runner = Runner(args)
        result = runner.run()
    except RunError as exc:
        print(f"hybrid86 run: {exc}", file=sys.stderr)
        return 2
    if result.status != 0 or args.headless:
        print(f"hybrid86: {result.reason}", file=sys.stderr)
    if args.stats:
        try:
            write_statistics(result.statistics, args.stats)
        except (RunError, OSError) as exc:
            print(f"hybrid86 run: {exc}", file=sys.stderr)
            return 2
    return result.status


def cmd_bench(args) -> int:
    from monitor import bench

    if args.runs < 1:
        print("hybrid86 bench: --runs must be at least 1", file=sys.stderr)
        return 2
    if args.name == "modes":
        return cmd_bench_modes(args)
    run, fmt = {"boot-linux": (bench.boot_linux, bench.format_boot_linux),
                "boot-dos": (bench.boot_dos, bench.format_boot_dos)}[args.name]
    try:
        result = run(args.image, args.runs, args.qemu, progress=lambda m: print(m, file=sys.stderr))
    except bench.BenchError as exc:
        print(f"hybrid86 bench {args.name}: {exc}", file=sys.stderr)
        return 2
    print(fmt(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def cmd_bench_modes(args) -> int:
    from monitor import bench_modes
    from monitor.guests.dos import GuestToolError

    if args.iterations < 1000:
        print("hybrid86 bench modes: --iterations must be at least 1000", file=sys.stderr)
        return 2
    try:
        result = bench_modes.bench(iters=args.iterations, repeats=args.runs,
                                   progress=lambda m: print(m, file=sys.stderr))
    except GuestToolError as exc:
        print(f"hybrid86 bench modes: {exc}", file=sys.stderr)
        return 2
    print(bench_modes.format_results(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def cmd_guest(args) -> int:
    from monitor.guests.dos import GuestToolError
    from monitor.linux.disk import build_boot_disk, missing_tools
    from monitor.linux.guest import build_linux_guest

    try:
        if args.kind == "linux-disk":
            if not args.kernel:
                raise GuestToolError("--kernel BZIMAGE is needed (and usually --initrd FILE)")
            disk = build_boot_disk(args.kernel, args.initrd, args.out or "linux-hd.img", args.append)
            print(disk)
            print(f"boot with: hybrid86 run --hda {disk} --memory 128 --serial-console", file=sys.stderr)
            return 0
        out = args.out or "."
        if args.disk and missing_tools():
            build_boot_disk("", None, "", args.append)           # (says which tools are missing)
        kernel, initrd = build_linux_guest(out, args.release, args.init)
        print(kernel)
        print(initrd)
        if args.disk:
            disk = build_boot_disk(kernel, initrd, os.path.join(out, "linux-hd.img"), args.append)
            print(disk)
    except GuestToolError as exc:
        print(f"hybrid86 guest {args.kind}: {exc}", file=sys.stderr)
        return 2
    print(f"boot with: hybrid86 run --kernel {kernel} --initrd {initrd} --append console=ttyS0 "
          f"--serial stdio --headless", file=sys.stderr)
    return 0


def cmd_pending(name: str) -> int:
    print(f"hybrid86 {name}: not implemented yet - {PENDING[name]}.", file=sys.stderr)
    return EXIT_NOT_IMPLEMENTED


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PENDING:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "run":
        return cmd_run(args)
    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "guest":
        return cmd_guest(args)
    if args.command == "fuzz":
        from monitor.fuzz import cli as fuzz_cli

        return fuzz_cli.main(args)
    if args.command == "info":
        try:
            return cmd_info(args)
        except ImportError as exc:
            print(f"hybrid86 info: {exc}", file=sys.stderr)
            return 1
        except RuntimeError as exc:  # CalibrationError and friends: one clear line
            print(f"hybrid86 info: {exc}", file=sys.stderr)
            return 1
    return cmd_pending(args.command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
