"""The DE/BT decision rule (monitor/modes.py): a table, its precedence, and the whole input space."""

import itertools

import pytest

from monitor.modes import Decision, Reason, World, decide, decide_state

BT, DE = World.BT, World.DE
R = Reason

# (pe, vm, cpl, iopl, if, tf, reversible) -> (world, reason, single_step)
TABLE = [
    # 1. real mode: BT whatever else is set
    ((0, 0, 0, 0, 1, 0, 1), BT, R.REAL_MODE, False),
    ((0, 0, 0, 3, 0, 1, 0), BT, R.REAL_MODE, True),
    ((0, 1, 3, 0, 1, 0, 1), BT, R.REAL_MODE, False),     # VM without PE means nothing
    # 2. V8086: DE at every IOPL, IF, TF and segment state
    ((1, 1, 3, 0, 1, 0, 1), DE, R.V8086, False),
    ((1, 1, 3, 3, 1, 0, 1), DE, R.V8086, False),          # IOPL 3: still DE (real IOPL = guest IOPL)
    ((1, 1, 3, 0, 0, 0, 1), DE, R.V8086, False),          # V86 with IF=0 is still DE
    ((1, 1, 3, 0, 1, 1, 1), DE, R.V8086, False),          # V86 with TF: the real CPU single-steps
    ((1, 1, 3, 0, 1, 0, 0), DE, R.V8086, False),          # V86 segments are always base = sel*16
    # 3. CPL 0
    ((1, 0, 0, 0, 1, 0, 1), BT, R.CPL0, False),
    ((1, 0, 0, 3, 0, 1, 0), BT, R.CPL0, True),            # reported as CPL0, single-stepped
    # 4. CPL <= IOPL
    ((1, 0, 3, 3, 1, 0, 1), BT, R.CPL_LE_IOPL, False),    # CPL3 with IOPL3 is BT
    ((1, 0, 1, 1, 1, 0, 1), BT, R.CPL_LE_IOPL, False),
    ((1, 0, 2, 3, 0, 0, 0), BT, R.CPL_LE_IOPL, False),    # before IF and segments
    ((1, 0, 3, 3, 1, 1, 1), BT, R.CPL_LE_IOPL, True),
    # 5. rings 1 and 2 above IOPL
    ((1, 0, 1, 0, 1, 0, 1), BT, R.INNER_RING, False),
    ((1, 0, 2, 1, 1, 1, 1), BT, R.INNER_RING, True),
    # 6. IF clear at CPL 3
    ((1, 0, 3, 0, 0, 0, 1), BT, R.IF_CLEAR, False),
    ((1, 0, 3, 2, 0, 1, 0), BT, R.IF_CLEAR, True),        # before segments and TF
    # 7. a non-reversible segment
    ((1, 0, 3, 0, 1, 0, 0), BT, R.NON_REVERSIBLE_SEGMENT, False),
    ((1, 0, 3, 1, 1, 1, 0), BT, R.NON_REVERSIBLE_SEGMENT, True),
    # 8. TF set
    ((1, 0, 3, 0, 1, 1, 1), BT, R.TRAP_FLAG, True),
    ((1, 0, 3, 2, 1, 1, 1), BT, R.TRAP_FLAG, True),
    # 9. user code
    ((1, 0, 3, 0, 1, 0, 1), DE, R.USER, False),
    ((1, 0, 3, 2, 1, 0, 1), DE, R.USER, False),
]


@pytest.mark.parametrize("inputs,world,reason,single_step", TABLE)
def test_table(inputs, world, reason, single_step):
    pe, vm, cpl, iopl, if_, tf, rev = inputs
    d = decide(bool(pe), bool(vm), cpl, iopl, bool(if_), bool(tf), bool(rev))
    assert d == Decision(world, reason, single_step)
    assert d.direct == (world is DE)


def test_table_covers_every_reason():
    assert {reason for _, _, reason, _ in TABLE} == set(Reason)


SPACE = list(itertools.product((0, 1), (0, 1), range(4), range(4), (0, 1), (0, 1), (0, 1)))


def test_exhaustive_world():
    """Over all 512 inputs: DE exactly for V8086 and for plain user code (an independent formula)."""
    for pe, vm, cpl, iopl, if_, tf, rev in SPACE:
        d = decide(bool(pe), bool(vm), cpl, iopl, bool(if_), bool(tf), bool(rev))
        de = pe and (vm or (cpl == 3 and iopl < 3 and if_ and rev and not tf))
        assert d.direct == bool(de), (pe, vm, cpl, iopl, if_, tf, rev, d)


def test_exhaustive_reasons():
    """Each reason is given exactly when its rule is the first that applies."""
    for pe, vm, cpl, iopl, if_, tf, rev in SPACE:
        d = decide(bool(pe), bool(vm), cpl, iopl, bool(if_), bool(tf), bool(rev))
        pm = pe and not vm                     # protected mode, not V8086
        user = pm and cpl == 3 and iopl < 3    # the only state where IF, segments, TF decide
        expected = {
            R.REAL_MODE: not pe,
            R.V8086: pe and vm,
            R.CPL0: pm and cpl == 0,
            R.CPL_LE_IOPL: pm and 0 < cpl <= iopl,
            R.INNER_RING: pm and cpl in (1, 2) and cpl > iopl,
            R.IF_CLEAR: user and not if_,
            R.NON_REVERSIBLE_SEGMENT: user and if_ and not rev,
            R.TRAP_FLAG: user and if_ and rev and tf,
            R.USER: user and if_ and rev and not tf,
        }
        assert [r for r, holds in expected.items() if holds] == [d.reason], (pe, vm, cpl, iopl, if_, tf, rev)
        # Single-instruction units whenever BT runs with TF set, whatever the reason.
        assert d.single_step == (d.world is BT and bool(tf))


def test_decide_state_reads_cr0_and_eflags():
    assert decide_state(0x60000010, 0x202, 0, True).reason is R.REAL_MODE
    assert decide_state(0x11, 0x20202, 3, False) == Decision(DE, R.V8086)
    assert decide_state(0x80000011, 0x202, 3, True) == Decision(DE, R.USER)
    assert decide_state(0x11, 0x3202, 3, True).reason is R.CPL_LE_IOPL      # IOPL 3
    assert decide_state(0x11, 0x002, 3, True).reason is R.IF_CLEAR
    assert decide_state(0x11, 0x302, 3, True) == Decision(BT, R.TRAP_FLAG, True)


@pytest.mark.parametrize("cpl,iopl", [(-1, 0), (4, 0), (0, 4)])
def test_out_of_range(cpl, iopl):
    with pytest.raises(ValueError):
        decide(True, False, cpl, iopl, True, False, True)
