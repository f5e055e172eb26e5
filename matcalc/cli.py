"""The `matcalc` command. Exit codes: 0 success, 2 user error, 3 a checked candidate is wrong, 1 internal bug."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence

EXAMPLES = """\
examples:
  matcalc diff "x^T A x" x                          ->  (A + A^T) x
  matcalc diff "x^T A x" x --where "A: symmetric"   ->  2 A x
  matcalc diff "log(det(X))" X                      ->  inv(X)^T
  matcalc diff "sigmoid(W x + b)" x --steps         ->  the derivation, rule by rule
  matcalc diff "x^T A x" x --hessian --verify       ->  A + A^T, proven with SymPy
  matcalc diff "W x + b" x --layout denominator --json
  matcalc check "a^T x" x "a"                       ->  correct (exit 0) or a counterexample (exit 3)

language: products by juxtaposition or *, transpose ^T ' or ᵀ, powers ^k, element-wise .* ./ .^
(or ⊙ ⊘), functions exp log sin cos tan tanh sigmoid relu softplus sqrt abs sign step arcsin
arccos arctan sum tr det logdet inv diag norm1 norm2 softmax logsumexp, constants vector(c)
matrix(c) I eye. Capitals are matrices, Greek names scalars, other names vectors; override with
--where "c: scalar; X: matrix(m, n); y: vector(m); S: symmetric". Reference: docs/language.md.

exit codes: 0 success, 2 error in the input, 3 the checked candidate is wrong, 1 internal error.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matcalc",
        description="Symbolic matrix calculus: derivatives in Matrix Cookbook form, proven with SymPy.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors (for bug reports)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        """Options shared by diff and check."""
        sub.add_argument("--where", metavar="DECLS", help='declarations, e.g. "A: symmetric; X: matrix(m, n)"')
        sub.add_argument("--layout", choices=["numerator", "denominator"], default="numerator",
                         help="Jacobian layout: numerator m×n (default) or denominator n×m")
        sub.add_argument("--hessian", action="store_true", help="the Hessian of a scalar w.r.t. a vector")
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    diff = commands.add_parser("diff", help="differentiate EXPR w.r.t. VAR", epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    diff.add_argument("expr", metavar="EXPR")
    diff.add_argument("var", metavar="VAR")
    common(diff)
    output = diff.add_mutually_exclusive_group()
    output.add_argument("--latex", action="store_true", help="print LaTeX")
    output.add_argument("--json", action="store_true", help="print JSON: input, declarations, shape, text, LaTeX")
    diff.add_argument("--verify", action="store_true", help="prove the result elementwise with SymPy")
    diff.add_argument("--steps", action="store_true", help="show the derivation, rule by rule")
    diff.add_argument("--shapes", action="store_true", help="show the inferred type and shape of every symbol")

    check = commands.add_parser("check", help="check your own derivative CANDIDATE of EXPR w.r.t. VAR",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("expr", metavar="EXPR")
    check.add_argument("var", metavar="VAR")
    check.add_argument("candidate", metavar="CANDIDATE")
    common(check)

    commands.add_parser("rules", help="list every derivative and simplification rule")
    return parser


def _run_rules() -> int:
    from .differentiate import DIFFERENTIAL_RULES, ELEMENTWISE_RULES
    from .simplify import SIMPLIFY_RULES

    print("differential rules (matcalc/differentiate.py):")
    for differential_rule in DIFFERENTIAL_RULES:
        print(f"  {differential_rule.name:22s} {differential_rule.statement}")
    print("element-wise functions:")
    for elementwise_rule in ELEMENTWISE_RULES.values():
        print(f"  {elementwise_rule.name:22s} {elementwise_rule.statement}")
    print("simplification rules, in the order they are tried (matcalc/simplify.py):")
    for rewrite_rule in SIMPLIFY_RULES:
        print(f"  {rewrite_rule.name:40s} {rewrite_rule.statement}")
    return 0


def _run_diff(args: argparse.Namespace) -> int:
    from .api import diff, hessian

    d = hessian(args.expr, args.var, args.where) if args.hessian else diff(args.expr, args.var, args.where,
                                                                            args.layout)
    report = d.verify() if args.verify else None
    if args.json:
        payload = {"input": args.expr, **d.to_json()}
        if report is not None:
            payload["verified"] = bool(report)
            payload["verification"] = str(report)
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        if args.shapes:
            for declaration in d.where.values():
                print(f"{declaration}")
            print(f"result: {d.shape[0]}×{d.shape[1]}")
        if args.steps:
            print(d.derivation())
        print(d.latex() if args.latex else str(d))
        if report is not None:
            print(report)
    if report is not None and not report:
        print("internal error: the result failed its own verification; please report it", file=sys.stderr)
        return 1
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from .api import check

    result = check(args.expr, args.var, args.candidate, args.where, args.layout, hessian_of=args.hessian)
    print(result)
    return 0 if result else 3


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import MatcalcError

    try:
        if args.command == "rules":
            return _run_rules()
        return _run_diff(args) if args.command == "diff" else _run_check(args)
    except MatcalcError as error:
        if args.debug:
            traceback.print_exc()
        print(f"matcalc: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug in matcalc, never the user's fault
        if args.debug:
            traceback.print_exc()
        else:
            print(f"matcalc: internal error: {type(error).__name__}: {error}\n"
                  f"please report it with the command line and --debug", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
