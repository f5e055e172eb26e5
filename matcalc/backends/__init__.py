"""Meanings of the IR: the NumPy interpreter, the SymPy proof, generated code."""
