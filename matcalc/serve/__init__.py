"""`matcalc serve`: a page and a JSON API on a real server (Starlette on uvicorn, the optional extra `web`).
docs/server.md describes the API, the limits and the page's element ids."""

from __future__ import annotations

from typing import Any

INSTALL_HINT = "the web server needs the extra 'web': pip install 'matcalc-symbolic[web]'"


def missing_web_extra() -> str | None:
    """None when Starlette and uvicorn can be imported, else what to install."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


def serve(host: str = "127.0.0.1", port: int = 8000, **settings: Any) -> None:
    """Run the server until interrupted; `settings` are those of `pool.Settings` (workers, timeout, ...)."""
    import uvicorn

    from .app import create_app
    from .pool import Settings

    app = create_app(Settings(**settings))
    # limit_concurrency bounds open connections (uvicorn answers 503 past it); the pool bounds the work
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5, limit_concurrency=1000)
