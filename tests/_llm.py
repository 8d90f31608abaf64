"""What the SmolLM2 tests share: the registration they use (``conftest.smollm2`` imports it)."""

SMOLLM2_TASK_SIZES = (16, 8)
"""Prompts of up to 16 tokens, up to 8 new tokens."""
