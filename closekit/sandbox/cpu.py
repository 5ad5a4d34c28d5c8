"""One CPU for an experiment's processes.

An experiment is a chain of hand-offs: an endpoint makes a call and waits, the helper relays its
segment and looks at the sockets, the other endpoint wakes, answers and waits. One of them runs at a
time, so spreading them over CPUs buys nothing and costs a cross-CPU wake-up at every hand-off (an
interrupt to another CPU and its way out of idle). So the notebook's thread, while it waits for the
trace, and the helper, the reaper and the endpoints, while they run the experiment, are held on one
CPU: the notebook's, where the helper may use it, else the helper's own (the scheduler has just woken
it there); a run repeated because a busy machine disturbed it on the helper's own (the notebook's may
be the busy one). Between experiments they are free again. Where no CPU can be chosen (no
sched_getcpu), nothing is held.

TCP's behaviour does not depend on it, but what the lab sees of it on a loopback does (modes
netns-loopback and host): there the kernel takes a segment in, and answers it, in its sender's
context, and the helper looking at a socket from another CPU can catch it halfway (a FIN_WAIT_2 inside
the processing of one FIN-ACK, in 1 close-default in 20 to 40 held nowhere). Held on one CPU, a look
comes before or after. A trace's `queued` still says when a process waited for the CPU. README, "One
CPU per experiment", has the figures.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

_libc = ctypes.CDLL(None, use_errno=True)
HERE = "here"  # a CPU asked for as this: the one the thread is on


def _cpu(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@contextmanager
def one_cpu(wanted: object) -> Iterator[int | None]:
    """Hold this thread on CPU `wanted` where it may, else on the one it is on now, for the block; yield
    that CPU (None: the thread stays free). Its mask is given back afterwards."""
    try:
        allowed = os.sched_getaffinity(0)
        cpu = _cpu(wanted)
        if cpu not in allowed:
            cpu = _libc.sched_getcpu()
        if cpu not in allowed:
            raise OSError(0, "no CPU to choose")
        if len(allowed) > 1:  # (with one, it is held there already)
            os.sched_setaffinity(0, {cpu})
    except (OSError, AttributeError):
        yield None
        return
    try:
        yield cpu
    finally:
        if len(allowed) > 1:
            try:
                os.sched_setaffinity(0, allowed)
            except OSError:
                pass


def pin(value: object) -> None:
    """Hold this process (and what it forks) on CPU `value` from now on, where it may; None: as it was."""
    cpu = _cpu(value)
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
