"""Deferred Ctrl-C / SIGTERM: recorded inside the block, raised at the caller's check or when the block ends."""

from __future__ import annotations

import gc
import os
import signal
import weakref

import pytest

from robrep.interrupt import Terminated, deferred_interrupts


@pytest.fixture(autouse=True)
def python_handlers():
    """The handlers a plain ``python`` process starts with (pytest may have changed SIGINT's)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, previous[0])
    signal.signal(signal.SIGTERM, previous[1])


@pytest.mark.parametrize("sig, exc", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_waits_for_the_check_and_the_handlers_come_back(sig, exc):
    with pytest.raises(exc), deferred_interrupts() as pending:
        os.kill(os.getpid(), sig)
        assert pending.signals == [sig]  # recorded, nothing raised yet: the unit of work finishes
        pending.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_signal_after_the_last_check_is_raised_when_the_block_ends():
    with pytest.raises(Terminated) as info:
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.code == 128 + signal.SIGTERM


def test_ctrl_c_inside_a_weakref_callback_is_not_lost():
    """Undeferred, a KeyboardInterrupt raised while a weakref callback runs is printed as "Exception ignored" and
    dropped (the collection loop it should stop runs on); deferred, the next check raises it."""

    class Thing:
        pass

    with pytest.raises(KeyboardInterrupt), deferred_interrupts() as pending:
        thing = Thing()
        ref = weakref.ref(thing, lambda r: os.kill(os.getpid(), signal.SIGINT))
        del thing
        gc.collect()
        assert ref() is None and pending
        pending.check()


def test_a_handler_someone_else_installed_is_left_alone():
    def mine(signum, frame):
        raise RuntimeError("mine")

    signal.signal(signal.SIGTERM, mine)
    with pytest.raises(RuntimeError, match="mine"), deferred_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is mine
