"""opML: optimistic machine learning with a MIPS fraud-proof VM."""
