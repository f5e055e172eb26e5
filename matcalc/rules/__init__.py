"""Rules as data and the strategies that apply them: simplification, stable forms, Kronecker identities."""
