"""The case format: pydantic models, value types and the sequence-arithmetic expression language."""
