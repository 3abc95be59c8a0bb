"""Run a function in several spawned processes at once and wait until each has done its work (the concurrent-writer
tests). A child holding Lance's runtime can hang at interpreter exit after its work is committed (seen once in the
full suite: ``multiprocessing.Pool``'s teardown then waited on it for 15 minutes), so each child reports when its
call returned, and one that does not exit after that is killed; a child that dies before reporting fails at once."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from typing import Callable, Sequence


def _child(target: Callable, args, index: int, done) -> None:
    target(args)
    done.put(index)
    done.close()
    done.join_thread()  # the report is out before anything at exit can hang


def run_spawned(target: Callable, arglist: Sequence, timeout: float = 300.0, exit_grace: float = 30.0) -> None:
    """``target(args)`` for every ``args`` of ``arglist``, each in a process of its own, all at once (spawn:
    forking next to Lance's runtime threads can crash). Raises AssertionError naming the calls that did not finish."""
    ctx = mp.get_context("spawn")
    done = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, a, i, done)) for i, a in enumerate(arglist)]
    for p in procs:
        p.start()
    finished, deadline = set(), time.monotonic() + timeout
    try:
        while len(finished) < len(procs):
            try:
                finished.add(done.get(timeout=2))
            except queue.Empty:
                gone = [i for i, p in enumerate(procs) if i not in finished and not p.is_alive()]
                if gone or time.monotonic() > deadline:
                    missing = sorted(set(range(len(procs))) - finished)
                    raise AssertionError(
                        f"calls {missing} did not finish; exit codes {[p.exitcode for p in procs]}"
                    ) from None
    finally:
        for p in procs:
            p.join(timeout=exit_grace)
            if p.is_alive():  # its work is in (or the test already failed): a hang at exit is not the test's
                p.kill()
                p.join()
