"""The `matcalc` command. Exit codes: 0 success, 2 user error, 3 a checked candidate is wrong, 4 undecided within
the time limit, 1 internal bug."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_EXAMPLES_TEMPLATE = """\
examples:
  matcalc diff "x^T A x" x                          ->  (A + A^T) x
  matcalc diff "x^T A x" x --where "A: symmetric"   ->  2 A x
  matcalc diff "log(det(X))" X                      ->  inv(X)^T
  matcalc diff "sigmoid(W x + b)" x --steps         ->  the derivation, rule by rule
  matcalc diff "tr(A X B)" X --steps --latex        ->  the derivation as a LaTeX aligned block
  matcalc diff "max(0, w^T x + b)" w --where "b: scalar" --steps chain   ->  Parr & Howard's chain rule
  matcalc diff "W x" x --steps index                ->  entry by entry: Σ_p W_ip δ_pk = W_ik, so J = W
  matcalc diff "-logdet(X)" X --verify              ->  -inv(X)^T, proven with SymPy
  matcalc diff "x^T A x" x --hessian --verify       ->  A + A^T, proven with SymPy
  matcalc diff "W x + b" x --layout denominator --json
  matcalc diff "a^T x" x --layout jacobian          ->  a^T  (a scalar's derivative as a row, as Parr & Howard)
  matcalc diff "W x + b" W                          ->  x^T ⊗ I  (a 3rd-order tensor, d vec(F) / d vec(W)^T)
  matcalc diff "inv(X)" X --form index              ->  ∂inv(X)_ij / ∂X_kl = -inv(X)_ik inv(X)_lj
  matcalc diff "x^T A x" x --code numpy             ->  a Python function computing (A + A^T) x
  matcalc codegen -f model.mc W1,W2 --backend jax   ->  one function: the value and both gradients
  matcalc check "a^T x" x "a"                       ->  correct (exit 0) or a counterexample (exit 3)
  matcalc diff "h = tanh(W1 x); L = sum(tanh(W2 h))" W1,W2   ->  both gradients, one backward pass
  matcalc diff -f model.mc W1                       ->  a program read from a file (- for standard input)
  matcalc --version                                 ->  matcalc 0.1.0

{language}

Options may stand before or after EXPR, VAR and CANDIDATE, and these may start with a minus:
no -- is needed. A shape error caused by a default type says so and suggests the declaration.

exit codes: 0 success, 2 error in the input, 3 the checked candidate is wrong, 4 the proof could not
decide within --timeout seconds, 1 internal error.
"""



def _language_summary() -> str:
    """The language in one paragraph, its functions and named constants listed from their tables."""
    from .core.constants import CONSTANTS
    from .core.functions import FUNCTIONS

    # the sizes: the lowered functions with no lowering (rows, cols, size); var, min, leaky_relu are functions
    sizes = [name for name, spec in FUNCTIONS.items() if spec.kind == "lowered" and spec.lowering is None]
    functions = [name for name in FUNCTIONS if name not in sizes]
    text = (f"language: products by juxtaposition or *, transpose ^T ' or ᵀ, powers ^k, element-wise .* ./ .^ "
            f"(or ⊙ ⊘), functions {' '.join(functions)}, sizes {' '.join(sizes)} (and a declared dimension's "
            f"name, n), constants vector(c) matrix(c) I eye {' '.join(CONSTANTS)}. Capitals are matrices, Greek "
            f'names scalars, other names vectors; override with --where "c: scalar; X: matrix(m, n); y: vector(m); '
            f'S: symmetric; n: dim". Reference: docs/language.md.')
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False)


EXAMPLES = _EXAMPLES_TEMPLATE.format(language=_language_summary())

def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and the subparser of each command (for `_options_first`)."""
    from . import __version__
    from .calculus.spec import METHODS

    parser = argparse.ArgumentParser(
        prog="matcalc",
        description="Symbolic matrix calculus: derivatives in Matrix Cookbook form, proven with SymPy.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors (for bug reports)")
    parser.add_argument("--version", action="version", version=f"matcalc {__version__}")
    # not required: a bare `matcalc` prints the help and exits 0
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        """Options shared by diff and check."""
        sub.add_argument("--where", metavar="DECLS", help='declarations, e.g. "A: symmetric; X: matrix(m, n)"')
        sub.add_argument("--layout", choices=["numerator", "denominator", "jacobian"], default="numerator",
                         help="numerator: a Jacobian m×n, a gradient shaped like its variable (default); "
                              "denominator: a Jacobian n×m; jacobian: a scalar's derivative is a row, the "
                              "transpose of the gradient (as Parr & Howard write it)")
        sub.add_argument("--hessian", action="store_true",
                         help="the Hessian of a scalar w.r.t. a vector or a matrix (of x,y: the block Hessian)")
        sub.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                         help="time limit of the SymPy proof (default 30): past it the verdict is undecided, exit 4")
        sub.add_argument("-f", "--file", metavar="FILE",
                         help="read EXPR (an expression or a program) from FILE, or from standard input for -")
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    diff = commands.add_parser("diff", help="differentiate EXPR w.r.t. VAR", epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    diff.add_argument("expr", metavar="EXPR", nargs="?", help="an expression, or a program: h = tanh(W x); L = sum(h)")
    diff.add_argument("var", metavar="VAR", nargs="?", help="the variable, or several: W1,W2,b (one backward pass)")
    common(diff)
    diff.add_argument("--inline", action="store_true",
                      help="print the result as one expression, without naming shared subexpressions")
    output = diff.add_mutually_exclusive_group()
    output.add_argument("--latex", action="store_true", help="print LaTeX")
    output.add_argument("--json", action="store_true", help="print JSON: input, declarations, shape, text, LaTeX")
    output.add_argument("--code", choices=["numpy", "jax", "torch"], default=None,
                        help="print a Python function computing the derivative with that library")
    diff.add_argument("--product", choices=["jvp", "vjp"], default=None,
                      help="with --code: the derivative applied to a direction dX (jvp; for a Hessian, the "
                           "Hessian-vector product) or its transpose applied to a cotangent G (vjp)")
    diff.add_argument("--form", choices=["vec", "index", "differential"], default=None,
                      help="how to write the result: vec (Kronecker form, d vec(F) / d vec(X)^T; a tensor's default), "
                           "index (∂F_ij / ∂X_kl = ...) or differential (d(F) = ..., linear in dX)")
    diff.add_argument("--verify", action="store_true", help="prove the result elementwise with SymPy")
    diff.add_argument("--steps", nargs="?", const="differential", default=None, choices=list(METHODS),
                      metavar="METHOD", help="show the derivation by METHOD: differential (the default: matcalc's own, "
                      "rule by rule), chain (Parr & Howard's chain rule: intermediate variables, local derivatives, "
                      "the product of the Jacobians) or index (entry by entry, with Kronecker deltas)")
    diff.add_argument("--shapes", action="store_true", help="show the inferred type and shape of every symbol")

    check = commands.add_parser("check", help="check your own derivative CANDIDATE of EXPR w.r.t. VAR",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("expr", metavar="EXPR", nargs="?")
    check.add_argument("var", metavar="VAR", nargs="?")
    check.add_argument("candidate", metavar="CANDIDATE", nargs="?", help="an expression or a program")
    common(check)
    check.add_argument("--json", action="store_true",
                       help="print JSON: verdict, method, entries, digits, sizes, counterexample, message")

    codegen = commands.add_parser("codegen", help="print one function computing EXPR and its gradients w.r.t. VARS",
                                  epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    codegen.add_argument("expr", metavar="EXPR", nargs="?", help="a scalar expression, or a program")
    codegen.add_argument("var", metavar="VARS", nargs="?", help="the variables: W1,W2,b")
    codegen.add_argument("--backend", choices=["numpy", "jax", "torch"], default="numpy")
    codegen.add_argument("--where", metavar="DECLS", help='declarations, e.g. "A: symmetric; X: matrix(m, n)"')
    codegen.add_argument("--hessian", action="store_true", help="return the Hessian w.r.t. each variable too")
    codegen.add_argument("-f", "--file", metavar="FILE",
                         help="read EXPR (an expression or a program) from FILE, or from standard input for -")
    codegen.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    rules = commands.add_parser("rules", help="list every derivative and simplification rule")
    serve = commands.add_parser("serve", help="serve the page and the JSON API (docs/server.md)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    serve.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                       help="time limit of each request's work (default 20): past it the worker is stopped")
    serve.add_argument("--queue", type=int, default=64, help="requests that may wait for a worker (default 64)")
    serve.add_argument("--proof-timeout", type=float, default=None, metavar="SECONDS",
                       help="time limit of a SymPy proof, past it undecided (default: 60%% of --timeout)")
    return parser, {"diff": diff, "check": check, "codegen": codegen, "rules": rules, "serve": serve}


def _option_action(token: str, parser: argparse.ArgumentParser,
                   exact: bool = False) -> tuple[argparse.Action | None, bool]:
    """(the action `token` names in `parser`, whether `token` is an option at all).

    Uses the parser's own option table, so it follows every option added above. A long option may be
    abbreviated, as argparse allows, and may carry its value after '='. A `--name` that names no option
    (or several) is still an option, so that argparse reports it; any other token starting with '-'
    (`-logdet(X)`, `-x^T x`, `-a`) is an expression. With `exact`, only a whole long option counts.
    """
    table = parser._option_string_actions  # option string -> action: argparse's own table
    name = token.split("=", 1)[0] if token.startswith("--") else token
    if name in table and (name.startswith("--") or not exact):
        return table[name], True
    if exact or not re.fullmatch(r"--[A-Za-z][A-Za-z0-9-]*", name):
        return None, False
    matches = {table[option] for option in table if option.startswith(name) and option.startswith("--")}
    return (matches.pop() if len(matches) == 1 else None), True


def _options_first(argv: list[str], parser: argparse.ArgumentParser,
                   commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """argv with the command's options first, then `--`, then its positionals.

    argparse reads `-logdet(X)` as an unknown option, and a `--` typed by the user would swallow the
    options after it; this pre-pass decides what is an option with the command's own option table, so
    an expression or candidate may start with '-' and stand anywhere among the options. After a `--`
    typed by the user, only an exact long option of the command is still an option.
    """
    head: list[str] = []
    index = 0
    while index < len(argv) and argv[index].startswith("-"):  # the top-level options take no value
        head.append(argv[index])
        index += 1
    if index == len(argv) or argv[index] not in commands:
        return argv  # no command, or an unknown one: argparse says so
    command = commands[argv[index]]
    options: list[str] = []
    positionals: list[str] = []
    escaped = False
    tokens = argv[index + 1:]
    position = -1
    while position + 1 < len(tokens):
        position += 1
        token = tokens[position]
        if token == "--" and not escaped:
            escaped = True
            continue
        action, is_option = _option_action(token, command, exact=escaped)
        if not is_option:
            positionals.append(token)
            continue
        if action is not None and action.nargs == "?" and "=" not in token:
            # an optional value (--steps [METHOD]) is taken only when it is one: `--steps "x^T A x" x` keeps EXPR
            # (or a near miss of one, `--steps chian`, so that argparse names the methods)
            following = tokens[position + 1] if position + 1 < len(tokens) else ""
            choices = [str(c) for c in action.choices or ()]
            if following in choices or difflib.get_close_matches(following, choices, n=1, cutoff=0.75):
                position += 1
                token = f"{token}={tokens[position]}"
        elif action is not None and action.nargs != 0 and "=" not in token:  # it takes the next token as its value
            value = tokens[position + 1] if position + 1 < len(tokens) else None
            if value is not None:
                position += 1
                # joined with '=', so that a value starting with '-' is not read as an option
                token = f"{token}={value}" if token.startswith("--") else token + value
        options.append(token)
    return [*head, argv[index], *options, *(["--", *positionals] if positionals else [])]


def _run_rules() -> int:
    from .calculus.differential import DIFFERENTIAL_RULES, ELEMENTWISE_RULES
    from .calculus.index_form import INDEX_RULES
    from .calculus.jacobian import READING_RULES
    from .calculus.readers import ADJOINT_RULES, VEC_RULES
    from .rules.jacobian import DIAGONAL_FORMS, FACTOR_FORMS
    from .rules.simplify import SIMPLIFY_RULES
    from .rules.stable import STABLE_FORMS

    tables = [  # (heading, rules, width of the name column)
        ("differential rules (matcalc/calculus/differential.py; a function's rule is its FunctionSpec's, "
         "matcalc/core/functions.py):", DIFFERENTIAL_RULES, 22),
        ("element-wise functions:", ELEMENTWISE_RULES.values(), 22),
        ("vec (Kronecker) identities, read children first (matcalc/calculus/readers.py):", VEC_RULES, 28),
        ("adjoint identities, read in reverse topological order (matcalc/calculus/readers.py):", ADJOINT_RULES, 22),
        ("simplification rules, in the order they are tried (matcalc/rules/simplify.py):", SIMPLIFY_RULES, 40),
        ("Jacobian reading rules, one level at a time, in the order they are tried (matcalc/calculus/jacobian.py):",
         READING_RULES, 36),
        ("equal forms of a factor holding dx, for the Jacobian reader (matcalc/rules/jacobian.py):", FACTOR_FORMS, 52),
        ("diagonals as vectors, for the Jacobian reader (matcalc/rules/jacobian.py):", DIAGONAL_FORMS, 52),
        ("numerically stable forms, for evaluation and generated code (matcalc/rules/stable.py):", STABLE_FORMS, 28),
        ("index-form rules, entry by entry (matcalc/calculus/index_form.py):", INDEX_RULES, 22),
    ]
    for heading, rules, width in tables:
        print(heading)
        for listed in rules:
            print(f"  {listed.name:{width}s} {listed.statement}")
    return 0


def _read_operands(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Fill args.expr from --file (the positionals then shift by one) and check that every operand is given."""
    from .core.errors import ParseError

    values = [getattr(args, name) for name in names]
    if args.file is not None:
        if values[-1] is not None:
            raise ParseError(f"with --file, give only {' and '.join(n.upper() for n in names[1:])} "
                             f"(the expression is read from {args.file})")
        try:
            if args.file == "-":
                text = sys.stdin.read()
            else:
                with open(args.file, encoding="utf-8") as handle:
                    text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise ParseError(f"cannot read {args.file}: {error}") from None
        values = [text, *values[:-1]]
    missing = [name.upper() for name, value in zip(names, values, strict=True) if value is None]
    if missing:
        raise ParseError(f"the following arguments are required: {', '.join(missing)} "
                         f"(see matcalc {args.command} --help)")
    for name, value in zip(names, values, strict=True):
        setattr(args, name, value)


def _run_diff(args: argparse.Namespace) -> int:
    from .api import diff, grad, hessian

    _read_operands(args, ("expr", "var"))
    names = [name.strip() for name in args.var.split(",")]
    if args.code is not None:
        if len(names) > 1:
            from .core.errors import ParseError

            raise ParseError("--code takes one variable; `matcalc codegen` writes one function for several")
        d = hessian(args.expr, names[0], args.where) if args.hessian else \
            diff(args.expr, names[0], args.where, args.layout)
        print(d.to_code(args.code, product=args.product), end="")  # type: ignore[union-attr]
        return 0
    if len(names) > 1 and args.hessian:
        blocks = hessian(args.expr, names, args.where, inline=args.inline)
        print(blocks.latex() if args.latex else str(blocks))
        if args.verify:
            with _status_line() as progress:
                verified = blocks.verify(timeout=args.timeout, progress=progress)
            print("verified: every block" if verified else "not verified")
        return 0
    if len(names) > 1:
        derivatives = grad(args.expr, names, args.where, inline=args.inline, layout=args.layout)
    elif args.hessian:
        derivatives = {names[0]: hessian(args.expr, names[0], args.where, inline=args.inline)}
    else:
        derivatives = {names[0]: diff(args.expr, names[0], args.where, args.layout, inline=args.inline)}
    with _status_line() as progress:
        reports = {name: d.verify(timeout=args.timeout, progress=progress) if args.verify else None
                   for name, d in derivatives.items()}
    if args.json:
        import json  # only --json prints it: kept off the start-up path

        payloads = {}
        for name, d in derivatives.items():
            payload = {"input": args.expr, **d.to_json(args.steps or "differential")}
            report = reports[name]
            if report is not None:
                payload["verified"] = bool(report)
                payload["verification"] = str(report)
            payloads[name] = payload
        single = len(payloads) == 1
        print(json.dumps(next(iter(payloads.values())) if single else {"gradients": payloads},
                         ensure_ascii=False, indent=2))
    elif len(derivatives) > 1 and not args.shapes:  # one program: shared definitions (and steps) once
        if args.steps:
            print(derivatives.derivation(args.steps, latex=args.latex))
        print(derivatives.latex() if args.latex else str(derivatives))
        for name, report in reports.items():
            if report is not None:
                print(f"{name}: {report}")
    else:
        for index, (name, d) in enumerate(derivatives.items()):
            if len(derivatives) > 1:
                print(f"{chr(10) if index else ''}# gradient w.r.t. {name}")
            if args.shapes:
                for declaration in d.where.values():
                    print(f"{declaration}")
                print(f"result: {'×'.join(map(str, d.shape)) or 'scalar'}")
            if args.steps:
                print(d.derivation(args.steps, latex=args.latex))
            form = getattr(args, "form", None)
            if form == "vec" and d.form != "vec":
                form = None  # a matrix result is its own vec form's reshaping: printed as the matrix
            print(d.latex(inline=args.inline, form=form) if args.latex else d.text(inline=args.inline, form=form))
            if reports[name] is not None:
                print(reports[name])
    if any(report is not None and report.undecided for report in reports.values()):
        return UNDECIDED
    if any(report is not None and not report for report in reports.values()):
        print("internal error: the result failed its own verification; please report it", file=sys.stderr)
        return 1
    return 0


class StatusLine:
    """A one-line progress display of a long proof on a terminal: nothing for the first `delay` seconds (a short
    proof shows nothing), then the proof's state (verify.Progress), rewritten in place with a carriage return at
    most every `interval` seconds, and erased by `close()`. The clock is a parameter, so a test needs no timing."""

    def __init__(self, stream: Any, delay: float = 1.0, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.delay, self.interval, self.clock = stream, delay, interval, clock
        self.start = clock()
        self.shown = ""  # the text on the line now
        self.last = float("-inf")

    def __call__(self, progress: object) -> None:
        now = self.clock()
        if now - self.start < self.delay or now - self.last < self.interval:
            return
        self.last = now
        text = f"matcalc: proving: {progress}"[:STATUS_WIDTH]
        self.stream.write("\r" + text.ljust(len(self.shown)))
        self.stream.flush()
        self.shown = text

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * len(self.shown) + "\r")
            self.stream.flush()
            self.shown = ""


STATUS_WIDTH = 79  # characters: one line of a usual terminal


@contextmanager
def _status_line() -> Iterator[StatusLine | None]:
    """A StatusLine on standard error when it is a terminal; None (no display) in a pipe, a file or CI."""
    if not _is_terminal(sys.stderr):
        yield None
        return
    status = StatusLine(sys.stderr)
    try:
        yield status
    finally:
        status.close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


UNDECIDED = 4  # exit code: the proof ran out of time (or found no point where the values are defined)


def _run_check(args: argparse.Namespace) -> int:
    from .api import check
    from .core.errors import for_cli

    _read_operands(args, ("expr", "var", "candidate"))
    with _status_line() as progress:
        result = check(args.expr, args.var, args.candidate, args.where, args.layout, hessian_of=args.hessian,
                       timeout=args.timeout, progress=progress)
    if args.json:
        import json  # only --json prints it: kept off the start-up path

        payload = {"input": args.expr, **result.to_json()}
        payload["message"] = for_cli(payload["message"])
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print(for_cli(str(result)))  # its reason may name an argument (layout='denominator'): say the option
    return 0 if result else UNDECIDED if result.undecided else 3


def _run_codegen(args: argparse.Namespace) -> int:
    from .api import codegen

    _read_operands(args, ("expr", "var"))
    names = [name.strip() for name in args.var.split(",")]
    print(codegen(args.expr, names, args.where, backend=args.backend, hessian=args.hessian), end="")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from .core.errors import MatcalcError
    from .serve import missing_web_extra, serve

    missing = missing_web_extra()
    if missing is not None:
        raise MatcalcError(missing)
    if not 0 <= args.port <= 65535 or (args.workers is not None and args.workers < 1) or not args.timeout > 0 \
            or args.queue < 0 or (args.proof_timeout is not None and not args.proof_timeout > 0):
        raise MatcalcError("--port must be 0 to 65535, --workers at least 1, --timeout and --proof-timeout positive, "
                           "--queue at least 0")
    print(f"matcalc: serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    serve(args.host, args.port, timeout=args.timeout, queue=args.queue, proof_timeout=args.proof_timeout,
          **({"workers": args.workers} if args.workers is not None else {}))
    return 0


def _quiet_stdout() -> None:
    """Send what is left of standard output to /dev/null: the interpreter flushes its buffer at exit, and a closed
    pipe would then print "Exception ignored ... BrokenPipeError" (as Python's docs on SIGPIPE advise)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a file (a test's stream): replace the object instead
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the interpreter flushes it at exit)


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = _parser()
    args = parser.parse_args(_options_first(list(sys.argv[1:] if argv is None else argv), parser, commands))
    if args.command is None:
        parser.print_help()
        return 0
    from .core.errors import MatcalcError, for_cli

    try:
        if args.command == "rules":
            code = _run_rules()
        elif args.command == "serve":
            code = _run_serve(args)
        elif args.command == "codegen":
            code = _run_codegen(args)
        else:
            code = _run_diff(args) if args.command == "diff" else _run_check(args)
        sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's flush at exit
        return code
    except MatcalcError as error:
        if args.debug:
            import traceback  # only --debug prints one: kept off the start-up path

            traceback.print_exc()
        print(f"matcalc: error: {for_cli(str(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (matcalc rules | head): not an error of matcalc's
        _quiet_stdout()
        return 0
    except Exception as error:  # a bug in matcalc, never the user's fault
        if args.debug:
            import traceback  # only --debug prints one: kept off the start-up path

            traceback.print_exc()
        else:
            print(f"matcalc: internal error: {type(error).__name__}: {error}\n"
                  f"please report it with the command line and --debug", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
