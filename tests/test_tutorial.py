"""docs/tutorial.md runs as written: each `$ matcalc ...` line of a console block prints the lines under it
(exactly, but for how many entries a proof settled exactly, which depends on the machine's speed: the replay's
`comparable`), and the Python blocks run in order in one namespace (their asserts compare the results with
finite differences and the seeds' answers)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from replay import comparable

from matcalc import cli

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), re.S)


def console_examples() -> list[tuple[str, list[str]]]:
    """(the command line, the lines printed under it) for every `$ ` line of the console blocks."""
    examples = []
    for block in blocks("console"):
        lines = block.splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("$ "):
                continue
            output = []
            for following in lines[index + 1:]:
                if following.startswith("$ "):
                    break
                output.append(following)
            examples.append((line[2:], output))
    return examples


def run_command(line: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = cli.main(shlex.split(line)[1:])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue()


def test_the_tutorial_has_console_and_python_examples():
    assert len(console_examples()) >= 25 and len(blocks("python")) >= 5
    assert all(command.startswith("matcalc ") for command, _ in console_examples())


@pytest.mark.parametrize(("command", "output"), console_examples(), ids=lambda v: str(v)[:60])
def test_each_command_prints_what_the_tutorial_says(command: str, output: list[str]):
    code, printed = run_command(command)
    assert code in (0, 3), printed  # 3: a checked candidate shown wrong on purpose
    assert comparable(printed).splitlines() == [comparable(line) for line in output]


def test_the_python_blocks_run_in_order(capsys: pytest.CaptureFixture):
    namespace: dict = {}
    for number, block in enumerate(blocks("python"), 1):
        try:
            exec(compile(block, f"<tutorial.md python block {number}>", "exec"), namespace)
        except Exception as error:  # which block, in the message
            raise AssertionError(f"python block {number} of docs/tutorial.md failed: {error!r}") from error
    assert "def df_dw(y, X, w, b):" in capsys.readouterr().out  # the code block 4 prints
