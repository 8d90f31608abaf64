"""Helpers for the EVM nodes opML runs on (py-evm via ape's test provider, anvil)."""
