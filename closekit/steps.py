"""Step constructors for writing scenarios, named as in a scenario script.

from closekit.steps import send, wait_recv_queue, close, recv
steps = [send("client", 6), wait_recv_queue("server", 6), close("server"), recv("client")]
"""

import inspect
import textwrap
from collections.abc import Callable

from closekit.errors import ScenarioError
from closekit.scenario import Accept as accept
from closekit.scenario import AtOnce, Call, Step
from closekit.scenario import Close as close
from closekit.scenario import Connect as connect
from closekit.scenario import Epoll as epoll
from closekit.scenario import Exit as exit
from closekit.scenario import Fork as fork
from closekit.scenario import Getsockopt as getsockopt
from closekit.scenario import Ioctl as ioctl
from closekit.scenario import Linger as linger
from closekit.scenario import Nonblocking as nonblocking
from closekit.scenario import ReadToEof as read_to_eof
from closekit.scenario import Recv as recv
from closekit.scenario import Release as release
from closekit.scenario import Send as send
from closekit.scenario import Setsockopt as setsockopt
from closekit.scenario import Shutdown as shutdown
from closekit.scenario import Sleep as sleep
from closekit.scenario import WaitAcked as wait_acked
from closekit.scenario import WaitDone as wait_done
from closekit.scenario import WaitRecvQueue as wait_recv_queue
from closekit.scenario import WaitSegment as wait_segment
from closekit.scenario import WaitState as wait_state


def call(side: str, function: Callable, *, background: bool = False) -> Call:
    """A step that runs `function(sock)` on `side`'s socket, in the sandbox (its source is sent)."""
    if not callable(function) or not hasattr(function, "__code__"):
        raise ScenarioError(f"call() needs a function defined with def, not {type(function).__name__}")
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        raise ScenarioError(
            f"the source of {function.__name__}() cannot be found; define it with def in a cell"
        ) from None
    return Call(side, source=source, function=function.__name__, background=background)


def at_once(*steps: Step) -> AtOnce:
    """These steps (of different processes) together, e.g. both sides close at the same time: on the
    lab's wire their segments cross (see closekit.scenario.AtOnce)."""
    return AtOnce("*", steps=tuple(steps))


__all__ = [
    "accept", "at_once", "call", "close", "connect", "epoll", "exit", "fork", "getsockopt", "ioctl",
    "linger", "nonblocking", "read_to_eof", "recv", "release", "send", "setsockopt", "shutdown",
    "sleep", "wait_acked", "wait_done", "wait_recv_queue", "wait_segment", "wait_state",
]  # fmt: skip
