"""Deferred Ctrl-C / SIGTERM: recorded inside the block, raised at the caller's check or when the block ends.

Each case runs in a fresh interpreter: the signals go to that process, never to the test runner, whose handlers and
threads (left by earlier tests' libraries) are not the plain ``python`` a user runs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRELUDE = """
import gc, os, signal, weakref
from robrep.interrupt import Terminated, deferred_interrupts
signal.signal(signal.SIGINT, signal.default_int_handler)  # a plain python's handlers, whatever started this child
signal.signal(signal.SIGTERM, signal.SIG_DFL)
"""


def child(code: str) -> str:
    """Run ``code`` after :data:`PRELUDE` in a fresh interpreter; returns its stdout (it must exit 0)."""
    run = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.parametrize("sig, exc", [("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "Terminated")])
def test_a_signal_waits_for_the_check_and_the_handlers_come_back(sig, exc):
    out = child(f"""
        try:
            with deferred_interrupts() as pending:
                os.kill(os.getpid(), signal.{sig})
                print("recorded", pending.signals == [signal.{sig}])  # nothing raised yet: the unit of work ends
                pending.check()
        except {exc}:
            print("raised")
        print("restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler,
              signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    """)
    assert out.split("\n")[:3] == ["recorded True", "raised", "restored True True"]


def test_a_signal_after_the_last_check_is_raised_when_the_block_ends():
    out = child("""
        try:
            with deferred_interrupts():
                os.kill(os.getpid(), signal.SIGTERM)
            print("not raised")
        except Terminated as exc:
            print("raised", exc.code)
    """)
    assert out.strip() == "raised 143"


def test_ctrl_c_inside_a_weakref_callback_is_not_lost():
    """Undeferred, a KeyboardInterrupt raised while a weakref callback runs is printed as "Exception ignored" and
    dropped (the collection loop it should stop runs on); deferred, the next check raises it."""
    out = child("""
        class Thing:
            pass

        try:
            with deferred_interrupts() as pending:
                thing = Thing()
                ref = weakref.ref(thing, lambda r: os.kill(os.getpid(), signal.SIGINT))
                del thing  # the callback runs here and the signal arrives inside it
                print("recorded", ref() is None and bool(pending))
                pending.check()
        except KeyboardInterrupt:
            print("raised")
    """)
    assert out.split() == ["recorded", "True", "raised"]


def test_a_handler_someone_else_installed_is_left_alone():
    out = child("""
        def mine(signum, frame):
            raise RuntimeError("mine")

        signal.signal(signal.SIGTERM, mine)
        try:
            with deferred_interrupts():
                os.kill(os.getpid(), signal.SIGTERM)
        except RuntimeError as exc:
            print("theirs ran", exc)
        print("kept", signal.getsignal(signal.SIGTERM) is mine)
    """)
    assert out.split("\n")[:2] == ["theirs ran mine", "kept True"]


@pytest.mark.parametrize("sig, exc", [("SIGTERM", "Terminated"), ("SIGINT", "KeyboardInterrupt")])
def test_a_signal_python_drops_in_a_weakref_callback_is_delivered_again(sig, exc):
    """Under sigterm_raises (a sweep waiting for its workers) the signal's exception, raised inside a weakref
    callback, is dropped by Python ("Exception ignored"); it is sent again and raised in the waiting loop. Outside
    the block the same drop loses it (the control)."""
    out = child(f"""
        import time
        from robrep.interrupt import sigterm_raises

        class Thing:
            pass

        def wait_for_it():
            thing = Thing()
            ref = weakref.ref(thing, lambda r: os.kill(os.getpid(), signal.{sig}))
            del thing  # the callback runs here, the handler raises inside it and Python drops the exception
            t = time.monotonic()
            while time.monotonic() - t < 3:  # a sweep waiting for its workers
                time.sleep(0.01)
            return "lost"

        try:
            with sigterm_raises():
                print(wait_for_it())
        except {exc}:
            print("raised")
        signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(Terminated(s)))  # no redelivery here
        try:
            print(wait_for_it())
        except {exc}:
            print("raised")
    """)
    assert out.split() == ["raised", "lost"]
