"""QEMU: a powercap-shaped tree per VM for its guest to read, written without following links."""
