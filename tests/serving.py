"""benchmarks/serve_load.py as a module, for the tests that start the real server (the load test, the browser tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "serve_load.py"


def serve_load() -> Any:
    """The benchmark's module: start_server, free_port, measure."""
    if "serve_load" in sys.modules:
        return sys.modules["serve_load"]
    spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_load"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module
