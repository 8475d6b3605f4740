"""The notebook-job wrapper that runs on a node: ``python -m kohakuriver_lab.nbjob``.

The host starts notebook tasks with this command and the environment ``KOHAKURIVER_URL``,
``KOHAKURIVER_TASK_ID`` and ``KOHAKURIVER_TASK_TOKEN``; everything else comes from the host:

1. ``GET tasks/{id}/artifacts/input.ipynb`` and ``GET tasks/{id}/job`` (the parameters);
2. papermill executes the notebook in-process: cell outputs stream to this process's
   stdout/stderr (so the task's live log shows them), progress is posted per cell (at most
   every ``PROGRESS_EVERY`` s, the last one always), and the partial output notebook is
   uploaded at most every ``SAVE_EVERY`` s instead of papermill's save after every cell;
3. ``PUT tasks/{id}/artifacts/output.ipynb`` at the end, also on failure (with the failing
   cell), and the failure as the progress ``error`` (the task's reason); exit status 1.

A kernel that dies (segfault, OOM kill) ends the job within about a second (nbclient notices;
the kernel is shut down ``immediate``). Host calls are retried with backoff for up to
``RETRY_FOR`` s, so a host restart does not lose the job's results.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from kohakuriver_lab import _http as api
from kohakuriver_lab._http import Call, check_response
from kohakuriver_lab.errors import TooLarge

T = TypeVar("T")
log = logging.getLogger("kohakuriver_lab.nbjob")

TASK_ID_ENV = "KOHAKURIVER_TASK_ID"
TASK_TOKEN_ENV = "KOHAKURIVER_TASK_TOKEN"
URL_ENV = "KOHAKURIVER_URL"

PROGRESS_EVERY = 0.1
SAVE_EVERY = 5.0
RETRY_FOR = 120.0
MAX_REASON = 2000
RETRY_STATUSES = frozenset({502, 503, 504})
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACE_ENV = "KRLAB_NBJOB_TRACE"
_TRACE = bool(os.environ.get(TRACE_ENV))


def trace(stage: str) -> None:
    """With ``KRLAB_NBJOB_TRACE=1``: ``nbjob-trace <epoch> <stage>`` on stderr (profiling)."""
    if _TRACE:
        print(f"nbjob-trace {time.time():.4f} {stage}", file=sys.stderr, flush=True)


class JobError(Exception):
    """The job cannot run (no task environment, host gone for too long)."""


# =============================================================================
# Host link (task token)
# =============================================================================


class HostLink:
    """Task-token calls to the host, retried with exponential backoff for ``retry_for`` s."""

    def __init__(
        self,
        url: str,
        task_id: str,
        token: str,
        *,
        retry_for: float = RETRY_FOR,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = url if url.endswith("/") else url + "/"
        self.task_id = task_id
        self.retry_for = retry_for
        self._lock = threading.Lock()  # httpx.Client is thread-safe; this orders uploads
        self._http = httpx.Client(
            base_url=f"{base}kohakuriver/api/",
            headers={"Authorization": f"Task {token}"},
            timeout=30,
            transport=transport,
        )

    @classmethod
    def from_env(cls) -> HostLink:
        """Build from ``KOHAKURIVER_URL``/``_TASK_ID``/``_TASK_TOKEN``."""
        missing = [n for n in (URL_ENV, TASK_ID_ENV, TASK_TOKEN_ENV) if not os.environ.get(n)]
        if missing:
            raise JobError(
                f"not inside a kohakuriver task: {', '.join(missing)} not set "
                "(the host starts notebook jobs with these)"
            )
        return cls(os.environ[URL_ENV], os.environ[TASK_ID_ENV], os.environ[TASK_TOKEN_ENV])

    def _retry(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        deadline = time.monotonic() + self.retry_for
        delay = 0.2
        while True:
            try:
                response = send()
                if response.status_code not in RETRY_STATUSES:
                    check_response(response)
                    return response
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise JobError(f"host unreachable for {self.retry_for:.0f} s: {problem}")
            log.warning("host call failed (%s); retrying in %.1f s", problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def run(self, call: Call[T]) -> T:
        """Execute a :class:`~kohakuriver_lab._http.Call` with retries."""
        response = self._retry(
            lambda: self._http.request(call.method, call.path, params=call.params, json=call.json)
        )
        return call.parse(response)

    def put_artifact(self, name: str, data: bytes) -> None:
        """``PUT tasks/{id}/artifacts/{name}``."""
        path = f"tasks/{self.task_id}/artifacts/{name}"
        with self._lock:
            self._retry(lambda: self._http.put(path, content=data))

    def close(self) -> None:
        self._http.close()


# =============================================================================
# Progress and partial saves, off the cell path
# =============================================================================


class Reporter:
    """Posts progress (latest value wins, ≥ ``every`` s apart) and uploads partial output
    notebooks from one background thread, so cells never wait on the network."""

    def __init__(self, link: HostLink, *, every: float = PROGRESS_EVERY) -> None:
        self.link = link
        self.every = every
        self._cond = threading.Condition()
        self._progress: tuple[int, int, int | None] | None = None
        self._snapshot: bytes | None = None
        self._stop = False
        self.posted = 0
        self._thread = threading.Thread(target=self._loop, name="nbjob-reporter", daemon=True)
        self._thread.start()

    def progress(self, done: int, total: int, cell: int | None) -> None:
        with self._cond:
            self._progress = (done, total, cell)
            self._cond.notify()

    def snapshot(self, data: bytes) -> None:
        with self._cond:
            self._snapshot = data
            self._cond.notify()

    def _loop(self) -> None:
        last = 0.0
        while True:
            with self._cond:
                while self._progress is None and self._snapshot is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                wait = last + self.every - time.monotonic()
                if wait > 0 and self._snapshot is None:
                    self._cond.wait(wait)
                    continue
                progress, self._progress = self._progress, None
                snapshot, self._snapshot = self._snapshot, None
            try:
                if progress is not None:
                    self.link.run(api.post_progress(self.link.task_id, *progress))
                    self.posted += 1
                    last = time.monotonic()
                if snapshot is not None:
                    self.link.put_artifact("output.ipynb", snapshot)
            except Exception:  # reporting must never kill the job
                log.warning("progress report failed", exc_info=True)

    def finish(self, done: int, total: int, cell: int | None, error: str | None) -> None:
        """Stop the thread and post the final progress synchronously."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=30)
        self.link.run(api.post_progress(self.link.task_id, done, total, cell, error))
        self.posted += 1


# =============================================================================
# The kernel, started early
# =============================================================================

PYTHON_KERNELS = frozenset({"python", "python2", "python3"})


def kernel_name_of(source: bytes) -> str:
    """The notebook's kernelspec name, read without nbformat (``python3`` when it has none)."""
    try:
        name = json.loads(source)["metadata"]["kernelspec"]["name"]
    except (ValueError, KeyError, TypeError):
        return "python3"
    return name if isinstance(name, str) and name else "python3"


class Kernel:
    """A kernel started before papermill is imported, so its boot overlaps that import.

    nbclient is handed the manager and a ready client: it neither starts the kernel nor runs
    ``wait_for_ready`` (whose IOPub flush idles 0.2 s), and it does not shut it down either:
    :meth:`kill` sends SIGKILL to the kernel's process group without waiting for it to exit,
    because once the job has its output nothing the kernel does matters.
    """

    def __init__(self, name: str, cwd: str | None) -> None:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        self.name = name
        self.km: Any = AsyncKernelManager(kernel_name=name)
        self.kc: Any = None
        self.killed = False
        extra = ["--HistoryManager.hist_file=:memory:"] if name in PYTHON_KERNELS else []
        kwargs: dict[str, Any] = {"extra_arguments": extra}
        if cwd is not None:
            kwargs["cwd"] = cwd
        run_sync(self.km.start_kernel)(**kwargs)
        trace("kernel process launched")

    def ready_client(self, timeout: float) -> Any:
        """A started client once the kernel answers ``kernel_info`` on shell and on IOPub."""
        from jupyter_core.utils import run_sync

        if self.kc is None:
            self.kc = run_sync(self._ready)(timeout)
            trace("kernel ready")
        return self.kc

    async def _ready(self, timeout: float) -> Any:
        from queue import Empty

        kc = self.km.client()
        kc.start_channels()
        deadline = time.monotonic() + timeout
        while True:
            msg_id = kc.kernel_info()
            try:
                await self._reply(kc, msg_id, min(1.0, max(0.1, deadline - time.monotonic())))
                return kc
            except Empty:
                pass
            if not await self.km.is_alive():
                kc.stop_channels()
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                kc.stop_channels()
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    @staticmethod
    async def _reply(kc: Any, msg_id: str, wait: float) -> None:
        """The shell reply and the IOPub ``idle`` for ``msg_id`` (IOPub is connected then)."""
        end = time.monotonic() + wait
        replied = idle = False
        while not replied:
            msg = await kc.get_shell_msg(timeout=max(0.0, end - time.monotonic()))
            replied = msg["parent_header"].get("msg_id") == msg_id
        while not idle:
            msg = await kc.get_iopub_msg(timeout=max(0.0, min(0.2, end - time.monotonic())))
            idle = (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"
            )

    def kill(self) -> None:
        """SIGKILL to the kernel's process group; no waiting, no graceful shutdown."""
        import signal

        if self.killed:
            return
        self.killed = True
        process = getattr(self.km.provisioner, "process", None)
        pid = getattr(process, "pid", None)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)  # the kernel leads its own session
            except OSError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:
                log.debug("stop_channels failed", exc_info=True)
        try:
            self.km.cleanup_connection_file()
        except Exception:
            log.debug("connection file cleanup failed", exc_info=True)


# =============================================================================
# papermill engine with a throttled execution manager
# =============================================================================


def _kill_kernel_on_sigterm(kernel: Kernel) -> Any:
    """A kill before nbclient has its own handler must not leave the kernel (its own session,
    out of reach of the supervisor's group kill) running. Returns the previous handler."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum: int, frame: object) -> None:
        kernel.kill()
        os._exit(128 + signum)

    return signal.signal(signal.SIGTERM, on_term)


def _engine_classes(reporter: Reporter, save_every: float, kernel: Kernel | None = None) -> Any:
    """The papermill engine for jobs (built lazily: papermill is imported only here)."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, NotebookExecutionManager

    class JobManager(NotebookExecutionManager):  # type: ignore[misc]
        """Saves by uploading a snapshot at most every ``save_every`` s; reports each cell."""

        current_cell: int | None = None

        def save(self, **kwargs: Any) -> None:
            if kwargs.get("nb") is not None:
                self.nb = kwargs["nb"]
            if getattr(self, "_final", False):
                return
            now = time.monotonic()
            if not hasattr(self, "_last_upload"):
                self._last_upload = now  # no upload of the untouched notebook at the start
            if now - self._last_upload >= save_every:
                self._last_upload = now
                reporter.snapshot(_dump(self.nb))

        def autosave_cell(self, **kwargs: Any) -> None:
            return None  # covered by the throttled save

        def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            if cell_index == 0:
                trace("kernel ready, first cell starts")
            self.current_cell = cell_index
            super().cell_start(cell, cell_index, **kwargs)

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            super().cell_complete(cell, cell_index, **kwargs)
            if cell_index is not None and cell_index + 1 == len(self.nb.cells):
                trace("last cell done")
            if cell_index is not None:
                reporter.progress(cell_index + 1, len(self.nb.cells), cell_index)

        def notebook_complete(self, **kwargs: Any) -> None:
            self._final = True  # the job uploads the final notebook itself
            super().notebook_complete(**kwargs)

    class JobEngine(NBClientEngine):  # type: ignore[misc]
        managers: list[Any] = []

        @classmethod
        def execute_notebook(
            cls,
            nb: Any,
            kernel_name: str,
            output_path: str | None = None,
            progress_bar: bool = False,
            log_output: bool = False,
            autosave_cell_every: int = 30,
            **kwargs: Any,
        ) -> Any:
            nb_man = JobManager(nb, output_path=None, log_output=False, progress_bar=False)
            cls.managers.append(nb_man)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=False, **kwargs)
            finally:
                trace("cells executed")
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: float | None = None,
            **kwargs: Any,
        ) -> Any:
            if kernel is None or kernel.name != kernel_name:
                return super().execute_managed_notebook(
                    nb_man,
                    kernel_name,
                    log_output=log_output,
                    stdout_file=stdout_file,
                    stderr_file=stderr_file,
                    start_timeout=start_timeout,
                    execution_timeout=execution_timeout,
                    **kwargs,
                )
            for unused in ("input_path", "timeout", "startup_timeout", "km"):
                kwargs.pop(unused, None)
            client = PapermillNotebookClient(
                nb_man,
                km=kernel.km,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logging.getLogger("papermill"),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                **kwargs,
            )
            client.kc = kernel.ready_client(start_timeout)
            client.kc.allow_stdin = False
            return client.execute()

    return JobEngine


def _failure_text(exc: BaseException, cell: int | None) -> str:
    name = type(exc).__name__
    if name == "PapermillExecutionError":
        lines = [
            _ANSI.sub("", line) for tb in getattr(exc, "traceback", []) for line in tb.split("\n")
        ]
        tail = "\n".join(line for line in lines if line.strip())[-1500:]
        head = (
            f"cell {getattr(exc, 'cell_index', cell)} (execution count "
            f"{getattr(exc, 'exec_count', None)}) raised {getattr(exc, 'ename', '?')}: "
            f"{getattr(exc, 'evalue', '')}"
        )
        text = f"{head}\n{tail}"
    elif name == "DeadKernelError":
        text = f"the kernel died while running cell {cell} (killed, out of memory, or crashed)"
    else:
        text = f"{name} while running cell {cell}: {exc}"
    return text[:MAX_REASON]


def run_job(link: HostLink, *, save_every: float = SAVE_EVERY, workdir: str | None = None) -> int:
    """Fetch, execute, report and upload; returns the process exit status."""
    source = link.run(api.get_artifact(link.task_id, "input.ipynb"))
    job = link.run(api.get_job(link.task_id))
    trace("input fetched")
    kernel_name = kernel_name_of(source)
    kernel: Kernel | None = None
    try:
        kernel = Kernel(kernel_name, workdir)  # boots while papermill is imported
    except Exception:  # e.g. no such kernel: papermill starts it and reports the error
        log.debug("early kernel start failed", exc_info=True)
    previous = _kill_kernel_on_sigterm(kernel) if kernel is not None else None
    try:
        return _execute(link, source, job, kernel, save_every, workdir)
    finally:
        if kernel is not None:
            kernel.kill()
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _execute(
    link: HostLink,
    source: bytes,
    job: dict[str, Any],
    kernel: Kernel | None,
    save_every: float,
    workdir: str | None,
) -> int:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # 1 s import
    import papermill
    from papermill.engines import papermill_engines

    trace("papermill imported")
    parameters = job.get("parameters") or {}
    nb = _load(source)
    total = len(nb.cells)

    reporter = Reporter(link)
    engine = _engine_classes(reporter, save_every, kernel)
    papermill_engines.register("kohakuriver-job", engine)
    tmp = tempfile.mkdtemp(prefix="kohakuriver-nbjob-")
    out_path = os.path.join(tmp, "output.ipynb")
    error: str | None = None
    result_nb: Any = None
    try:
        result_nb = papermill.execute_notebook(
            nb,
            out_path,
            parameters=parameters,
            engine_name="kohakuriver-job",
            kernel_name=kernel.name if kernel is not None else None,
            request_save_on_cell_execute=False,
            progress_bar=False,
            log_output=False,
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
            shutdown_kernel="immediate",
            cwd=workdir,
        )
    except Exception as exc:  # every failure is reported the same way
        managers = engine.managers
        cell = managers[-1].current_cell if managers else None
        error = _failure_text(exc, cell)
        print(f"notebook job failed: {error}", file=sys.stderr, flush=True)
        if managers:
            result_nb = managers[-1].nb
    if kernel is not None:
        kernel.kill()  # before the uploads: the output is in hand
    trace("execute_notebook returned")
    cell = engine.managers[-1].current_cell if engine.managers and error else None
    if result_nb is not None:
        total = len(result_nb.cells)  # with papermill's injected-parameters cell
    done = total if error is None else cell if cell is not None else _done_cells(result_nb)
    try:
        if result_nb is not None:
            data = (
                open(out_path, "rb").read()  # noqa: SIM115
                if error is None and os.path.exists(out_path)
                else _dump(result_nb)
            )
            try:
                link.put_artifact("output.ipynb", data)
            except TooLarge as exc:  # over an artifact limit: the task's reason says which
                error = f"output.ipynb was not stored: {exc.message}"
                raise
            trace("output uploaded")
    finally:
        reporter.finish(done, total, cell, error)
        trace("final progress posted")
        _rmtree(tmp)
    return 0 if error is None else 1


def _dump(nb: Any) -> bytes:
    return json.dumps(nb, ensure_ascii=False).encode("utf-8")


def _load(data: bytes) -> Any:
    import nbformat

    reads: Any = nbformat.reads
    return reads(data.decode("utf-8"), as_version=4)


def _done_cells(nb: Any) -> int:
    if nb is None:
        return 0
    return sum(
        1
        for cell in nb.cells
        if cell.get("metadata", {}).get("papermill", {}).get("status") in ("completed", "failed")
    )


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kohakuriver_lab.nbjob``."""
    logging.basicConfig(level=logging.WARNING, format="nbjob: %(levelname)s %(message)s")
    logging.getLogger("papermill").setLevel(logging.ERROR)
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m kohakuriver_lab.nbjob (configured by the environment)")
        return 2
    trace("main")
    try:
        link = HostLink.from_env()
    except JobError as exc:
        print(f"nbjob: {exc}", file=sys.stderr)
        return 2
    try:
        return run_job(link)
    except JobError as exc:
        print(f"nbjob: {exc}", file=sys.stderr)
        return 3
    finally:
        link.close()
        trace("exit")


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # no interpreter teardown (papermill, zmq, threads): the job is done
