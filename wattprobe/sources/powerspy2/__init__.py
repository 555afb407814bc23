"""Alciom PowerSpy2 wall-power meter over Bluetooth serial: protocol, device driver, sensor, emulator."""
