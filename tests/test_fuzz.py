"""Translator-versus-interpreter equivalence fuzzing (issue 6, docs/fuzzing.md)."""

from __future__ import annotations

import argparse
import json

import pytest

from monitor.fuzz import cli as fuzz_cli
from monitor.fuzz.campaign import KNOWN_BUGS, check, run_campaign
from monitor.fuzz.case import AC, Case, Item, case_from_bytes, layout
from monitor.fuzz.compare import compare, delivery, format_mismatch, memory_diffs
from monitor.fuzz.flags import effect
from monitor.fuzz.case import AF, CF, OF, PF, SF, ZF


def _agree(hexcode: str, **kw):
    case = case_from_bytes(bytes.fromhex(hexcode.replace(" ", "")), **kw)
    ref, mon, diffs = check(case)
    assert mon is not None, ref.event
    assert diffs == [], format_mismatch(case, ref, mon, diffs)
    return case, ref, mon


# ------------------------------------------------------------------ the two paths agree on known programs

def test_arithmetic_and_flags_agree():
    _, ref, _ = _agree("b8 05 00 01 d8 f7 e3 50 9c", regs={"ebx": 3})
    assert ref.event.kind == "hlt" and ref.gprs[0] & 0xFFFF == 0x18
    assert ref.undefined_flags == SF | ZF | AF | PF          # after mul


def test_divide_error_is_delivered_through_the_ivt_on_both_paths():
    case, ref, mon = _agree("31 c9 f7 f1")
    d = delivery(case, mon)
    assert d[0] == 0 and d[1] == case.ip + 2 and d[2] == case.cs      # #DE: IP at the div
    assert ref.first_delivery[:1] == (0,) and ref.first_delivery[4] is False


def test_int_n_frame_points_past_the_instruction():
    case, ref, mon = _agree("cd 21")
    assert delivery(case, ref)[:2] == (0x21, case.ip + 2)
    assert ref.first_delivery[4] is True


def test_ud_is_delivered_as_vector_6():
    case, ref, _ = _agree("0f 0b")
    assert delivery(case, ref)[:2] == (6, case.ip)


def test_int_6_is_a_software_interrupt_not_ud():
    # Unicorn reports `int 6` as UC_ERR_INSN_INVALID, like #UD; the reference
    # must still push the IP past the instruction (found by the fuzzer).
    case, ref, _ = _agree("cd 06")
    assert delivery(case, ref)[:2] == (6, case.ip + 2)


def test_io_trace_and_values_agree():
    _, ref, _ = _agree("e4 60 ba 78 00 ed e6 80 f3 6c", regs={"ecx": 3, "edi": 0x100})
    assert [t[0] for t in ref.io] == ["in", "in", "out", "in", "in", "in"]


def test_far_jump_changes_cs_on_both_paths():
    _, ref, _ = _agree("ea 05 00 00 30")
    assert ref.segs[1] == 0x3000 and ref.event.ip == 6


def test_lmsw_setting_pe_is_a_mode_event_on_both_paths():
    _, ref, mon = _agree("b8 01 00 0f 01 f0")
    assert ref.event.kind == mon.event.kind == "mode"


# ------------------------------------------------------------------ the comparison itself

def _pair(hexcode="b8 34 12"):
    case = case_from_bytes(bytes.fromhex(hexcode.replace(" ", "")))
    ref, mon, diffs = check(case)
    assert diffs == []
    return case, ref, mon


@pytest.mark.parametrize("field, change, expect", [
    ("gprs", lambda s: s.gprs.__setitem__(3, s.gprs[3] ^ 1), "ebx"),
    ("eflags", lambda s: setattr(s, "eflags", s.eflags ^ CF), "eflags"),
    ("eflags-if", lambda s: setattr(s, "eflags", s.eflags ^ 0x200), "eflags"),
    ("segs", lambda s: s.segs.__setitem__(3, s.segs[3] ^ 0x10), "ds"),
    ("bases", lambda s: s.seg_bases.__setitem__(4, 0x9F000), "fs base"),
    ("cr0", lambda s: setattr(s, "cr0", s.cr0 ^ 8), "cr0"),
    ("idtr", lambda s: setattr(s, "idtr", (0x400, 0x3FF)), "idtr"),
    ("memory", lambda s: setattr(s, "memory", s.memory[:0x1234] + b"\x99" + s.memory[0x1235:]), "memory 0x01234"),
    ("io", lambda s: s.io.append(("out", 0x80, 1, 0)), "I/O trace"),
    ("event", lambda s: setattr(s.event, "ip", s.event.ip + 1), "event"),
])
def test_a_different_state_is_a_mismatch(field, change, expect):
    case, ref, mon = _pair()
    if mon.memory[0x1234] == 0x99:
        mon.memory = mon.memory[:0x1234] + b"\0" + mon.memory[0x1235:]
        ref.memory = mon.memory
    change(mon)
    diffs = compare(case, ref, mon)
    assert diffs and any(d.startswith(expect) for d in diffs), diffs
    text = format_mismatch(case, ref, mon, diffs)
    assert "mov ax, 0x1234" in text and "reference (bare Unicorn" in text


def test_undefined_flags_are_not_compared_but_defined_ones_are():
    case, ref, mon = _pair("f7 e3")                       # mul bx: SF ZF AF PF undefined
    mon.eflags ^= SF | ZF | AF | PF
    assert compare(case, ref, mon) == []
    mon.eflags ^= CF
    assert compare(case, ref, mon)


def test_undefined_flag_bits_of_a_pushed_flags_image_are_masked():
    case, ref, mon = _pair("f7 e3 9c")
    lin, size, mask = ref.flag_images[-1]
    assert mask == SF | ZF | AF | PF and size == 2
    mem = bytearray(mon.memory)
    mem[lin] ^= SF | ZF
    mon.memory = bytes(mem)
    assert compare(case, ref, mon) == []
    mem[lin] ^= CF
    mon.memory = bytes(mem)
    assert compare(case, ref, mon)


def test_flag_table_follows_the_sdm():
    assert effect("shl", 16, 0) == (0, 0)                 # count 0: flags untouched
    assert effect("shl", 16, 1)[1] == AF
    assert effect("shl", 8, 9)[1] == AF | OF | CF         # count >= width: CF undefined
    assert effect("rcl", 8, 9) == (0, 0)                  # 9 mod 9 = 0
    assert effect("div", 16) == (0, CF | PF | AF | ZF | SF | OF)
    assert effect("and", 16)[1] == AF
    assert effect("bsf", 16) == (ZF, CF | OF | SF | AF | PF)


def test_memory_diffs_ranges():
    a = bytes(10000)
    b = bytearray(a)
    b[5] = 1
    b[6] = 1
    b[9000] = 7
    assert memory_diffs(a, bytes(b)) == [(5, 7), (9000, 9001)]
    assert memory_diffs(a, bytes(b), masks=[(5, 2, 0x0101)]) == [(9000, 9001)]


# ------------------------------------------------------------------ layout and strategies

def test_layout_keeps_branch_targets_inside_the_block_and_far_targets_on_the_next_item():
    items = [Item("branch", "jmp8", (b"\xeb", ("rel8", 9))), Item("alu", "nop", (b"\x90",)),
             Item("far", "jmpf", (b"\xea", ("far_ip16",), ("far_cs16",)), far_delta=0x10),
             Item("alu", "nop", (b"\x90",))]
    lay = layout(items, 0x2800)
    assert lay.code[:2] == b"\xeb\x01"                    # clamped to the far jump (the last item of region 0)
    ip, cs = int.from_bytes(lay.code[4:6], "little"), int.from_bytes(lay.code[6:8], "little")
    assert cs == 0x2810 and (cs << 4) + ip == 0x30000 + 8


def test_strategies_are_importable_and_decodable():
    from hypothesis import given, settings
    from monitor.fuzz.strategies import real_mode_cases

    @settings(max_examples=40, deadline=None, database=None)
    @given(real_mode_cases())
    def gen(case):
        assert case.code.endswith(b"\xf4") and case.insns >= 2
    gen()


# ------------------------------------------------------------------ campaigns

def test_default_campaign_finds_no_mismatch():
    """The bounded default run (known open bugs left out: KNOWN_BUGS)."""
    res = run_campaign("real", examples=250, seed=1)
    assert res.mismatches == [], res.mismatches[0][1]
    assert res.examples >= 200 and res.insns_generated > 1000
    for cls in ("alu", "mem", "branch", "far", "flags", "segload", "segread", "string", "io", "smc", "sysreg"):
        assert res.classes[cls] > 0, cls


@pytest.mark.long
def test_long_campaign():
    res = run_campaign("real", examples=20000, seed=7)
    assert res.mismatches == [], res.mismatches[0][1]


def test_a_broken_translation_rule_is_caught_and_shrunk(monkeypatch):
    """Break the translator: drop the 0x66 prefix that _ident adds to 16-bit
    ADD (every form: 01 03 05 81/0 83/0), so it runs as a 32-bit ADD.  The
    fuzzer must find it and shrink it to a few instructions."""
    from bt.realmode import RealModeTranslator

    original = RealModeTranslator._ident

    def broken(self, insn, raw):
        out = original(self, insn, raw)
        if insn.mnemonic == "add" and insn.opsize == 16:     # word ADD (byte ADD ignores 0x66)
            out = out.replace(b"\x66", b"", 1)
        return out

    monkeypatch.setattr(RealModeTranslator, "_ident", broken)
    res = run_campaign("real", examples=400, seed=4, classes=["alu"], max_items=6)
    assert res.mismatches, "the broken ADD rule was not caught"
    case, report = res.mismatches[0]
    assert case.insns <= 4, report                        # shrunk: a few instructions + hlt
    assert "add" in report and "MISMATCH" in report
    monkeypatch.undo()
    assert RealModeTranslator._ident is original
    ref, mon, diffs = check(case)
    assert diffs == []                                    # the same case passes with the rule restored


def test_cli_modes_and_report(tmp_path, capsys):
    p = argparse.ArgumentParser()
    fuzz_cli.add_arguments(p)
    out = tmp_path / "r.json"
    rc = fuzz_cli.main(p.parse_args(["--mode", "all", "--examples", "25", "--seed", "1", "--quiet",
                                     "--report", str(out)]))
    text = capsys.readouterr().out
    assert rc == 0
    for m in ("real", "pm16", "pm32", "ring3", "v86"):
        assert f"mode {m}: " in text
    assert "examples/s" in text and "total: " in text and "sensitive classes" in text
    rep = json.loads(out.read_text())
    assert rep["mismatches"] == 0 and [m["mode"] for m in rep["modes"]] == ["real", "pm16", "pm32", "ring3", "v86"]
    assert all(m["examples"] >= 20 for m in rep["modes"]) and rep["skipped"] == {}


# ------------------------------------------------------------------ translator bugs the fuzzer found

def _xfail(reason):
    return pytest.mark.xfail(strict=True, reason=reason)


def test_arpl_is_ud_in_real_mode():
    """Found by the fuzzer (arpl), fixed; a regression test now."""
    _agree("63 c0")


def test_sysenter_is_gp_in_real_mode():
    """Found by the fuzzer (sysenter), fixed; a regression test now."""
    _agree("0f 34")


def test_mov_from_cr_continues_after_the_unit_end():
    """Found by the fuzzer (mov-from-cr), fixed; a regression test now."""
    _agree("0f 20 c3")                                    # mov ebx, cr0 ; hlt


def test_mov_to_cr3_continues_after_the_unit_end():
    """Found by the fuzzer (mov-to-cr), fixed; a regression test now."""
    _agree("66 b8 00 10 00 00 0f 22 d8")                  # mov eax, 0x1000 ; mov cr3, eax


def test_int_after_lidt_uses_the_new_ivt():
    """Found by the fuzzer (lidt), fixed; a regression test now."""
    # [0x100] = limit 0x3ff, base 0x2000 (RAM there is the pseudo-random image): lidt [0x100]; int 0x21
    _agree("c7 06 00 01 ff 03 c7 06 02 01 00 20 c7 06 04 01 00 00 0f 01 1e 00 01 cd 21")


@_xfail(KNOWN_BUGS["ac-flag"])
def test_bug_int3_leaves_ac_set():
    _agree("cc", eflags=AC)


def test_fault_with_cs_operand_gives_fs_back():
    """Found by the fuzzer (cs-fault), fixed; a regression test now."""
    _agree("2e 62 00", regs={"eax": 0x1D7, "ebx": 0, "esi": 0})   # bound ax, cs:[bx+si] -> #BR


def test_mov_r32_cs_zero_extends():
    """Found by the fuzzer (mov-r32-cs), fixed; a regression test now."""
    _agree("66 8c c8", regs={"eax": 0x10000})


@_xfail(KNOWN_BUGS["popf-stack"])
def test_bug_popf_setting_tf_traps_one_instruction_early():
    _agree("68 02 01 9d eb 00")                           # push 0x102 ; popf ; jmp $+2


def test_unicorn_lazy_flags_departure_is_excluded_and_still_present():
    """movs; shl; loope: CF differs because *Unicorn* computes it wrongly when the
    three run in one translation block (bare Unicorn shows it too), so loope and
    loopne are left out of generation.  If this starts passing, Unicorn changed:
    drop the UNICORN_DEPARTURES entries."""
    from monitor.fuzz.campaign import UNICORN_DEPARTURES
    regs = {n: 0 for n in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "es", "ss", "ds", "fs", "gs")}
    case = Case(code=bytes.fromhex("b90100a4d120e100f4"), cs=0x2100, ip=0xF000, regs=regs, eflags=2, mem_seed=0)
    _, _, diffs = check(case)
    assert diffs and "eflags" in diffs[0] and "loope" in UNICORN_DEPARTURES


def test_mov_cs_memory_cs_store():
    """Found by the fuzzer (cs-store-cs), fixed; a regression test now."""
    _agree("2e 8c 08")                                    # mov word cs:[bx+si], cs


def test_int1_does_not_crash_the_translator():
    """Found by the fuzzer (int1 crashed the translator), fixed."""
    case = case_from_bytes(b"\xf1")
    _, mon, _ = check(case)
    assert mon.event.kind != "error", mon.event


def test_a_flag_the_sdm_leaves_undefined_is_not_consumed():
    """Found by a campaign (harness gap): `bt` leaves SF and OF undefined, and
    `setl` then stores them; single-stepping and whole blocks compute them
    differently.  The reference now ends such a run as unsupported."""
    from monitor.fuzz.flags import reads
    from bt.decoder import decode
    assert reads(decode(bytes.fromhex("0f 9c 00") + bytes(8), 0, 16)) == SF | OF
    case = case_from_bytes(bytes.fromhex("0f ba 20 00 0f 9c 00"))        # bt word [bx+si], 0 ; setl [bx+si]
    ref, mon, _ = check(case)
    assert mon is None and ref.event.kind == "unsupported" and "undefined" in ref.event.detail
