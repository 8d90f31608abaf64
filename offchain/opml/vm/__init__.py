"""The MIPS32 little-endian fraud-proof VM: reference step, memory, witnesses and fast executor."""
