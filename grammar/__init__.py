"""The input-language grammar, shipped inside the wheel (matcalc/grammar/matcalc.lark)."""
