"""A small pool of worker processes, one per core: each request's work runs in one of them, and a request past
its time limit has its worker killed and replaced, so no input can hold the server. Requests waiting for a free
worker form a bounded queue: past its length, or past `queue_timeout` seconds of waiting, the reply is a JSON 503.

The workers are forked from a fork server that has imported matcalc, NumPy and SymPy already and made a first
call of each kind (multiprocessing's `forkserver`, preloading `preload.py`), so a new worker is ready in
milliseconds and a request never pays for an import.
Nothing is shared between requests but the worker's caches of the IR (interned nodes hold no user's data apart
from the expression itself, and no reply depends on an earlier request)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

Reply = tuple[int, dict[str, Any]]
PROGRESS_INTERVAL = 0.25  # seconds between two progress messages of one job (a proof may report thousands of steps)


@dataclass(frozen=True)
class Settings:
    """The server's limits. `timeout` bounds each request's work (seconds, the worker is killed past it);
    `proof_timeout` the SymPy proofs inside it (past it a verdict is "undecided", a 200 reply)."""

    workers: int = max(1, os.cpu_count() or 1)
    timeout: float = 20.0
    proof_timeout: float | None = None  # default: 60% of timeout
    queue: int = 64  # requests that may wait for a worker
    queue_timeout: float = 60.0
    max_body: int = 64 * 1024  # bytes
    max_expr: int = 20_000  # characters of expr, candidate and where, each
    memory_mb: int | None = 2048  # address space a worker may add to what it has after the import
    recycle: int = 2000  # jobs a worker does before it is replaced (bounds the growth of its caches)

    @property
    def proof_limit(self) -> float:
        return self.proof_timeout if self.proof_timeout is not None else 0.6 * self.timeout


def _worker_main(connection: Connection, memory_mb: int | None) -> None:
    """A worker: warm up, say "ready", then answer one job at a time until told to stop (None) or killed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops its workers
    from . import jobs, preload  # noqa: F401 (imported by the fork server already: warm)
    if memory_mb is not None:
        with contextlib.suppress(ValueError, OSError, ImportError):
            import resource

            with open("/proc/self/statm") as statm:
                size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limit = size + memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    connection.send("ready")
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        endpoint, request, proof_timeout, wants_progress = message
        reporter = _ProgressSender(connection) if wants_progress else None
        connection.send(jobs.run(endpoint, request, proof_timeout, reporter))


class _ProgressSender:
    """In a worker: a proof's progress records sent up the pipe as ("progress", text), the first at once, then at
    most one every PROGRESS_INTERVAL seconds. The reply that ends the job is a (status, payload) pair."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.last = float("-inf")

    def __call__(self, record: object) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            self.connection.send(("progress", str(record)))


_context: Any = None


def _mp_context() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["matcalc.serve.preload"])
    return _context


class Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, settings: Settings) -> None:
        context = _mp_context()
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, settings.memory_mb), daemon=True)
        self.process.start()
        child.close()
        self.jobs = 0

    async def receive(self, timeout: float | None) -> Any:
        """The worker's next message, waiting at most `timeout` seconds (TimeoutError), without blocking the loop;
        EOFError if the worker died."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        descriptor = self.connection.fileno()
        loop.add_reader(descriptor, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, timeout)
        finally:
            loop.remove_reader(descriptor)
        return self.connection.recv()

    async def call(self, message: Any, timeout: float, on_progress: Callable[[str], None] | None = None) -> Reply:
        """The job's reply within `timeout` seconds in all (TimeoutError); its progress messages on the way go to
        `on_progress`."""
        self.connection.send(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.receive(max(deadline - time.monotonic(), 0.0))
            if isinstance(reply, tuple) and reply and reply[0] == "progress":
                if on_progress is not None:
                    on_progress(reply[1])
                continue
            self.jobs += 1
            return reply

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.connection.close()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.send(None)
        self.process.join(1.0)
        self.kill()
        self.process.join(1.0)


def error_reply(status: int, kind: str, message: str) -> Reply:
    return status, {"error": {"type": kind, "message": message, "summary": message}}


class Pool:
    """The workers, the queue of requests waiting for one, and the replacement of a killed worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.idle: asyncio.Queue[Worker] = asyncio.Queue()
        self.workers: set[Worker] = set()
        self.waiting = 0
        self.replacing: set[asyncio.Task] = set()
        self.stats = {"timeouts": 0, "busy": 0, "replaced": 0, "jobs": 0}

    async def _spawn(self) -> Worker:
        worker = await asyncio.get_running_loop().run_in_executor(None, Worker, self.settings)
        self.workers.add(worker)
        try:
            ready = await worker.receive(max(60.0, self.settings.timeout))
        except BaseException:
            self._drop(worker)
            raise
        if ready != "ready":
            self._drop(worker)
            raise RuntimeError(f"a worker started badly: {ready!r}")
        return worker

    def _drop(self, worker: Worker) -> None:
        self.workers.discard(worker)
        worker.kill()
        # reap it off the loop: join waits for the killed process
        asyncio.get_running_loop().run_in_executor(None, worker.process.join, 5.0)

    async def start(self) -> None:
        for worker in await asyncio.gather(*(self._spawn() for _ in range(self.settings.workers))):
            self.idle.put_nowait(worker)

    def _replace(self, worker: Worker) -> None:
        """Kill `worker` and start another in the background; it joins the idle ones when it is ready."""
        self._drop(worker)
        self.stats["replaced"] += 1

        async def replace() -> None:
            for _ in range(3):
                try:
                    self.idle.put_nowait(await self._spawn())
                    return
                except Exception:
                    await asyncio.sleep(0.5)

        task = asyncio.get_running_loop().create_task(replace())
        self.replacing.add(task)
        task.add_done_callback(self.replacing.discard)

    async def run(self, endpoint: str, request: dict[str, Any],
                  on_progress: Callable[[str], None] | None = None) -> Reply:
        """The reply to one checked request: the worker's, or a JSON 503 (queue full), 504 (time limit) or
        500 (the worker died). `on_progress` receives the text of each progress message of its proofs."""
        settings = self.settings
        if self.waiting >= settings.queue and self.idle.empty():
            self.stats["busy"] += 1
            return error_reply(503, "Busy", "the server is busy: too many requests are waiting; try again shortly")
        self.waiting += 1
        try:
            worker = await asyncio.wait_for(self.idle.get(), settings.queue_timeout)
        except asyncio.TimeoutError:
            self.stats["busy"] += 1
            return error_reply(503, "Busy", f"no worker was free within {settings.queue_timeout:g} s; try again")
        finally:
            self.waiting -= 1
        try:
            status, payload = await worker.call((endpoint, request, settings.proof_limit, on_progress is not None),
                                                settings.timeout, on_progress)
        except asyncio.TimeoutError:
            self.stats["timeouts"] += 1
            self._replace(worker)
            return error_reply(504, "Timeout", f"the request took longer than this server's limit of "
                                               f"{settings.timeout:g} s and was stopped")
        except asyncio.CancelledError:  # the client went away: the worker may still be busy with its job
            self._replace(worker)
            raise
        except (EOFError, OSError):
            self._replace(worker)
            return error_reply(500, "WorkerDied", "the worker handling the request stopped (out of memory?); "
                                                  "the request was not completed")
        self.stats["jobs"] += 1
        if worker.jobs >= settings.recycle:
            self._replace(worker)
        else:
            self.idle.put_nowait(worker)
        return status, payload

    async def close(self) -> None:
        for task in list(self.replacing):
            task.cancel()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, worker.stop) for worker in list(self.workers)),
                             return_exceptions=True)
        self.workers.clear()
