"""An IRQ line for device tests: records the level and counts rising edges."""


class Irq:
    def __init__(self):
        self.level = False
        self.rising = 0

    def __call__(self, level):
        if level and not self.level:
            self.rising += 1
        self.level = level
