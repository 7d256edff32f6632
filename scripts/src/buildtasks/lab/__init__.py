"""The local lab: engine, registry, base-image stand-ins, QEMU."""
