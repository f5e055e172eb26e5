"""Differentials, and the readers that take a derivative off them (reverse accumulation, vec, index)."""
