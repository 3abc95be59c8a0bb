"""Child processes for the crash tests, forked from a server that has already imported the heavy libraries.

A kill test starts its kernel a dozen times and SIGKILLs it mid-run; started as ``python -c`` each child spent
seconds importing torch, open_clip and diffusers before it did anything. Here each child is forked from a
multiprocessing forkserver that imported them once (nothing in it has run, so no threads; lancedb is left to each
child, since its runtime warns about forks): it starts in milliseconds and is still a process of its own, killed
by a real SIGKILL. ``ForkedChild`` answers like the part of ``subprocess.Popen`` the tests use: ``stdout``/``stderr``
as text streams, ``send_signal``, ``communicate``, ``returncode`` (negative: the signal that ended it)."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys

PRELOAD = [
    "numpy",
    "pyarrow",
    "torch",
    "open_clip",
    "diffusers",
    "realrag_core.config.loading",
    "realrag_core.embed.embedding",
    "realrag_core.generate.generation",
    "realrag_core.generators.demo.diffusion",
    "realrag_core.retriever.build",
]
_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = mp.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _run(code: str, argv: list[str], env: dict, out, err) -> None:
    """In the child: the environment, stdout and stderr of a ``python -c code *argv`` process, then the code."""
    os.environ.clear()
    os.environ.update(env)
    if env.get("OMP_NUM_THREADS"):  # torch read the variable when the server imported it: set it as a new process would
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    sys.argv = ["-c", *argv]
    try:
        exec(compile(code, "<child>", "exec"), {"__name__": "__main__"})
    except SystemExit as stop:
        sys.stdout.flush()
        os._exit(stop.code if isinstance(stop.code, int) else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class ForkedChild:
    """``python -c code *argv`` with environment ``env``, forked from the preloaded server."""

    def __init__(self, code: str, argv: list[str], env: dict):
        ctx = _context()
        out_r, out_w = ctx.Pipe(duplex=False)
        err_r, err_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_run, args=(code, list(argv), dict(env), out_w, err_w), daemon=True)
        self._proc.start()
        out_w.close()
        err_w.close()
        self.pid = self._proc.pid
        self.stdout = os.fdopen(os.dup(out_r.fileno()), "r")
        self.stderr = os.fdopen(os.dup(err_r.fileno()), "r")
        out_r.close()
        err_r.close()

    def send_signal(self, signal: int) -> None:
        if self._proc.exitcode is None:
            try:
                os.kill(self._proc.pid, signal)
            except ProcessLookupError:
                pass

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        import threading

        err: list[str] = []
        reader = threading.Thread(target=lambda: err.append(self.stderr.read()))  # neither pipe may fill up
        reader.start()
        out = self.stdout.read()  # ends when the child does (or is killed)
        reader.join(timeout)
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise TimeoutError(f"child {self.pid} still running after {timeout} s")
        self.stdout.close()
        self.stderr.close()
        return out, "".join(err)

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode
