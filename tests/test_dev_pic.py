"""8259A pair, driven through ports 0x20/0x21/0xA0/0xA1/0x4D0 as a BIOS and OS do."""

import json

import pytest

from devices.base import PortBus, SnapshotFormatError, SnapshotVersionError
from devices.pic8259 import PicState, Pic8259Pair


def bios_init(bus, master_base=0x08, slave_base=0x70, icw4=0x01):
    # The PC/AT BIOS sequence: ICW1 (edge, cascade, ICW4), ICW2 (vector base),
    # ICW3 (slave on IR2 / slave id 2), ICW4 (8086 mode), then unmask all.
    for port, value in (
        (0x20, 0x11), (0x21, master_base), (0x21, 0x04), (0x21, icw4),
        (0xA0, 0x11), (0xA1, slave_base), (0xA1, 0x02), (0xA1, icw4),
        (0x21, 0x00), (0xA1, 0x00),
    ):
        bus.write(port, 1, value)


@pytest.fixture
def machine():
    bus = PortBus()
    intr = []
    pic = bus.attach(Pic8259Pair(on_intr=intr.append))
    bios_init(bus)
    return bus, pic, intr


def read_isr(bus, port=0x20):
    bus.write(port, 1, 0x0B)  # OCW3: read ISR
    value = bus.read(port, 1)
    bus.write(port, 1, 0x0A)  # back to IRR
    return value


def eoi(bus, port=0x20):
    bus.write(port, 1, 0x20)


def test_priority_and_eoi_of_irq0_and_irq1(machine):
    bus, pic, intr = machine
    pic.irq_line(1).raise_()
    pic.irq_line(0).raise_()
    assert intr == [True]
    assert bus.read(0x20, 1) == 0b11  # IRR
    assert pic.acknowledge() == 0x08  # IRQ0 wins
    # IRQ1 is of lower priority than the in-service IRQ0: blocked until EOI.
    assert not pic.has_interrupt()
    assert read_isr(bus) == 0x01
    eoi(bus)
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x09
    eoi(bus)
    assert read_isr(bus) == 0 and bus.read(0x20, 1) == 0
    assert not pic.has_interrupt()
    assert intr[-1] is False


def test_higher_priority_request_nests_over_in_service_one(machine):
    bus, pic, _ = machine
    pic.irq_line(3).pulse()
    assert pic.acknowledge() == 0x0B
    pic.irq_line(1).pulse()
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x09
    assert read_isr(bus) == 0b1010
    eoi(bus)  # non-specific EOI clears the highest-priority in-service level (1)
    assert read_isr(bus) == 0b1000


def test_imr_masks_and_reads_back(machine):
    bus, pic, _ = machine
    bus.write(0x21, 1, 0xFE)  # only IRQ0 unmasked
    assert bus.read(0x21, 1) == 0xFE
    pic.irq_line(1).pulse()
    assert not pic.has_interrupt()
    bus.write(0x21, 1, 0x00)  # the latched edge is delivered once unmasked
    assert pic.acknowledge() == 0x09


def test_slave_cascade_through_irq2(machine):
    bus, pic, _ = machine
    pic.irq_line(12).pulse()
    pic.irq_line(8).pulse()
    assert pic.acknowledge() == 0x70  # IRQ8 beats IRQ12
    assert read_isr(bus, 0x20) == 0x04 and read_isr(bus, 0xA0) == 0x01
    # IRQ12 is lower than the in-service IRQ8 on the slave: wait for EOI.
    assert not pic.has_interrupt()
    eoi(bus, 0xA0)
    eoi(bus, 0x20)
    assert pic.acknowledge() == 0x74
    eoi(bus, 0xA0)
    eoi(bus, 0x20)
    assert read_isr(bus, 0x20) == 0 and read_isr(bus, 0xA0) == 0


def test_slave_mask_blocks_cascade(machine):
    bus, pic, _ = machine
    bus.write(0xA1, 1, 0x10)  # mask IRQ12
    pic.irq_line(12).pulse()
    assert not pic.has_interrupt()
    bus.write(0x21, 1, 0x04)  # mask the cascade input itself
    bus.write(0xA1, 1, 0x00)
    assert not pic.has_interrupt()
    bus.write(0x21, 1, 0x00)
    assert pic.acknowledge() == 0x74


def test_edge_line_held_high_is_delivered_once(machine):
    bus, pic, _ = machine
    pic.irq_line(4).raise_()
    assert pic.acknowledge() == 0x0C
    eoi(bus)
    assert not pic.has_interrupt()  # no new edge
    pic.irq_line(4).lower()
    pic.irq_line(4).raise_()
    assert pic.acknowledge() == 0x0C


def test_level_triggered_line_via_elcr_redelivers_while_high(machine):
    bus, pic, _ = machine
    bus.write(0x4D1, 1, 0xFF)
    assert bus.read(0x4D1, 1) == 0xDE  # IRQ8 and IRQ13 cannot be level
    bus.write(0x4D0, 1, 0x20)          # IRQ5 level
    assert bus.read(0x4D0, 1) == 0x20
    pic.irq_line(5).raise_()
    assert pic.acknowledge() == 0x0D
    eoi(bus)
    assert pic.acknowledge() == 0x0D  # still asserted: requests again
    eoi(bus)
    pic.irq_line(5).lower()
    assert not pic.has_interrupt()


def test_spurious_irq7_when_a_level_request_vanishes(machine):
    bus, pic, _ = machine
    bus.write(0x4D0, 1, 0x20)
    pic.irq_line(5).raise_()
    assert pic.has_interrupt()
    pic.irq_line(5).lower()  # gone before the INTA cycle
    assert pic.acknowledge() == 0x0F
    assert read_isr(bus) == 0  # a spurious IRQ7 is not put in service
    assert pic.spurious == 1


def test_spurious_irq15_leaves_master_irq2_in_service(machine):
    bus, pic, _ = machine
    bus.write(0x4D1, 1, 0x02)  # IRQ9 level
    pic.irq_line(9).raise_()
    assert pic.has_interrupt()
    # Master resolves IR2; the slave's request vanishes before the second INTA.
    master_irq = pic.master.pending_irq()
    assert master_irq == 2
    pic.slave.set_line(1, False)
    assert pic.acknowledge() == 0x77
    assert read_isr(bus, 0xA0) == 0
    assert read_isr(bus, 0x20) == 0x04  # the OS must EOI the master only


def test_auto_eoi_leaves_isr_clear(machine):
    bus, pic, _ = machine
    bios_init(bus, icw4=0x03)  # ICW4: 8086 mode + AEOI
    pic.irq_line(1).pulse()
    pic.irq_line(3).pulse()
    assert pic.acknowledge() == 0x09
    assert read_isr(bus) == 0
    assert pic.acknowledge() == 0x0B  # no EOI needed


def test_specific_eoi_and_rotation_commands(machine):
    bus, pic, _ = machine
    pic.irq_line(6).pulse()
    assert pic.acknowledge() == 0x0E
    pic.irq_line(3).pulse()
    assert pic.acknowledge() == 0x0B  # IR3 nests over IR6
    bus.write(0x20, 1, 0x66)  # specific EOI for IR6
    assert read_isr(bus) == 0x08
    # Rotate on specific EOI for IR3: IR3 becomes lowest, IR4 highest.
    bus.write(0x20, 1, 0xE3)
    assert read_isr(bus) == 0
    pic.irq_line(3).pulse()
    pic.irq_line(5).pulse()
    assert pic.acknowledge() == 0x0D  # IR5 now beats IR3
    eoi(bus)
    # Set priority: IR0 lowest (OCW2 110, level 0) -> IR1 highest.
    bus.write(0x20, 1, 0xC0)
    pic.irq_line(0).pulse()
    assert pic.acknowledge() == 0x0B  # order is now 1..7,0: the pending IR3 beats IR0
    eoi(bus)
    assert pic.acknowledge() == 0x08


def test_rotate_on_nonspecific_eoi_gives_round_robin(machine):
    bus, pic, _ = machine
    order = []
    for _ in range(3):
        pic.irq_line(3).pulse()
        pic.irq_line(4).pulse()
        vec = pic.acknowledge()
        order.append(vec)
        bus.write(0x20, 1, 0xA0)  # rotate on non-specific EOI
        order.append(pic.acknowledge())
        bus.write(0x20, 1, 0xA0)
    # After IR3 is serviced with rotation it becomes lowest, so IR4 wins the
    # next round: equal-priority devices take turns.
    assert order[:2] == [0x0B, 0x0C]
    assert order[2] == 0x0B


def test_poll_command(machine):
    bus, pic, _ = machine
    bus.write(0x20, 1, 0x0C)  # OCW3 poll
    assert bus.read(0x20, 1) == 0x00
    pic.irq_line(5).pulse()
    bus.write(0x20, 1, 0x0C)
    assert bus.read(0x20, 1) == 0x85
    assert read_isr(bus) == 0x20  # poll acknowledged it


def test_special_mask_mode_lets_lower_levels_through(machine):
    bus, pic, _ = machine
    pic.irq_line(3).pulse()
    assert pic.acknowledge() == 0x0B
    pic.irq_line(5).pulse()
    assert not pic.has_interrupt()
    bus.write(0x21, 1, 0x08)  # mask the in-service IR3
    bus.write(0x20, 1, 0x68)  # OCW3: set special mask mode
    assert pic.acknowledge() == 0x0D
    bus.write(0x20, 1, 0x48)  # reset special mask mode
    bus.write(0x20, 1, 0x65)  # specific EOI IR5


def test_icw1_resets_mask_and_requires_a_new_edge(machine):
    bus, pic, _ = machine
    bus.write(0x21, 1, 0xFF)
    pic.irq_line(4).raise_()
    bios_init(bus)
    assert bus.read(0x21, 1) == 0
    assert not pic.has_interrupt()  # edge-sense reset: the high line needs a new edge


def test_snapshot_keeps_pending_and_in_service_interrupts(machine):
    bus, pic, _ = machine
    bus.write(0x4D0, 1, 0x20)
    pic.irq_line(1).pulse()
    pic.irq_line(12).pulse()
    pic.irq_line(5).raise_()
    assert pic.acknowledge() == 0x09  # IRQ1 in service; 5 and 12 pending
    bus.write(0xA1, 1, 0x01)
    data = json.loads(json.dumps(pic.save().to_dict()))

    bus2 = PortBus()
    pic2 = bus2.attach(Pic8259Pair())
    pic2.restore(PicState.from_dict(data))
    assert read_isr(bus2) == 0x02
    assert bus2.read(0xA1, 1) == 0x01
    assert bus2.read(0x4D0, 1) == 0x20
    assert not pic2.has_interrupt()  # IRQ2 (cascade for 12) and 5 are below IRQ1
    eoi(bus2)
    assert pic2.acknowledge() == 0x74  # IR2 cascade beats IR5
    eoi(bus2, 0xA0)
    eoi(bus2)
    assert pic2.acknowledge() == 0x0D  # level IRQ5 still asserted
    assert pic.save() == PicState.from_dict(data)


def test_snapshot_version_and_kind_errors(machine):
    _, pic, _ = machine
    data = pic.save().to_dict()
    data["version"] = 99
    with pytest.raises(SnapshotVersionError):
        PicState.from_dict(data)
    with pytest.raises(SnapshotFormatError):
        pic.restore(object())


def test_bios_init_helper_matches_the_port_sequence():
    bus = PortBus()
    pic = bus.attach(Pic8259Pair())
    pic.bios_init()
    ref_bus = PortBus()
    ref = ref_bus.attach(Pic8259Pair())
    bios_init(ref_bus)
    assert pic.save() == ref.save()
    pic.irq_line(14).pulse()
    assert pic.acknowledge() == 0x76
