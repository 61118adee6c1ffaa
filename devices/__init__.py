"""PC devices, one per module, behind the interface in devices/base.py."""
