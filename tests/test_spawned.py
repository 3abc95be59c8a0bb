"""The runner of the concurrent-writer tests: a child that hangs at exit after its work is killed, not waited on
forever; a child that dies before its work is done fails the call at once."""

import os
import time

import pytest

from realrag_core.testing.spawned import run_spawned


def _write_then_hang_at_exit(args):
    import threading

    folder, i = args
    (folder / f"{i}.done").write_text("in")
    if i == 1:  # what Lance's runtime did once: the work is in, the process does not end
        threading.Thread(target=time.sleep, args=(3600,)).start()


def _die(args):
    os._exit(3)


def test_a_child_hanging_at_exit_is_killed_once_its_work_is_in(tmp_path):
    start = time.monotonic()
    run_spawned(_write_then_hang_at_exit, [(tmp_path, i) for i in range(3)], exit_grace=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.done", "1.done", "2.done"]
    assert time.monotonic() - start < 60


def test_a_child_that_dies_before_its_work_is_done_fails_at_once():
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"calls \[0\] did not finish; exit codes \[3\]"):
        run_spawned(_die, [None], timeout=600)
    assert time.monotonic() - start < 60
