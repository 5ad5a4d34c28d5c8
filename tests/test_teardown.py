"""Nothing of an experiment outlives it in the namespaces the lab keeps (issue 20): every TCP socket in
them is destroyed at teardown, whoever opened it and whatever its state, and the namespaces are checked
empty before the next run.

Both cases got through before: a connection a function opened itself (to a listener another function
made) stayed an orphan in FIN_WAIT_1 holding its unsent data for minutes, since the lab ended only the
connections it had numbered (the wire numbers those the client opens); and a loop of loopback
connections left 131,072 TIME_WAIT sockets in the kept namespace, after which the next built-in run
failed.
"""

from __future__ import annotations

import pytest

import closekit
from closekit import steps as s
from closekit.sandbox.client import Lab
from closekit.scenario import Scenario

pytestmark = pytest.mark.live

MODES = ["netns", "netns-loopback"]


def listen_on_the_side(sock):
    import builtins
    import socket

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind((sock.getsockname()[0], 4711))
    listener.listen(1)
    builtins.kept = listener  # never accepted, never closed by the function
    return "listening"


def leave_an_orphan(sock):
    """Connect to the side listener, fill the send queue while the peer's window is shut, close: the
    socket is an orphan in FIN_WAIT_1 with its data unsent. Returns its state and send queue as
    /proc/net/tcp shows them."""
    import socket

    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    c.connect((sock.getpeername()[0], 4711))
    port = c.getsockname()[1]
    c.setblocking(False)
    try:
        while True:
            c.send(b"x" * 65536)
    except BlockingIOError:
        pass
    c.close()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                state = "FIN_WAIT_1" if fields[3] == "04" else fields[3]
                return f"{state} {int(fields[4].split(':')[0], 16)}"
    return "gone"


def time_wait_flood(sock):
    """Thousands of loopback connections, each closed first by its connecting end: TIME_WAIT sockets."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    for _ in range(5000):
        c = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        c.close()
        accepted.close()
    with open("/proc/net/tcp") as table:
        return sum(line.split()[3] == "06" for line in table.readlines()[1:])


@pytest.fixture(params=MODES)
def lab(request):
    lab = Lab(sandbox=request.param)
    closekit.run("close-default", lab=lab)
    yield lab
    lab.close()


def left_behind(lab: Lab) -> dict[str, int]:
    stats = lab.stats()
    return {"sockets": stats["sockets"], "renewed": stats["renewed"]}


def test_an_orphan_a_function_left_with_unsent_data_is_destroyed_at_teardown(lab):
    # the server connects once the client's function has listened (each process runs its own lines)
    steps = (s.call("client", listen_on_the_side), s.wait_done("client"), s.call("server", leave_an_orphan))
    trace = closekit.run(Scenario("orphan", "", steps=steps), lab=lab)  # a connection the lab knew nothing of
    state, unsent = trace.syscalls("server", "call")[0].result.split()
    assert state == "FIN_WAIT_1" and int(unsent) > 1_000_000  # it was there, holding its data
    assert left_behind(lab) == {"sockets": 0, "renewed": 0}  # gone, from the very namespaces kept


def test_a_time_wait_flood_leaves_nothing_and_the_next_run_works(lab):
    # (netns-loopback: the capture's filter keeps only the experiment's port, so the flood's ten
    # thousands of segments never fill its queue, where before they could: "the capture dropped segments")
    trace = closekit.run(Scenario("flood", "", steps=(s.call("client", time_wait_flood),)), lab=lab)
    assert trace.syscalls("client", "call")[0].result >= 1000  # loopback ports in TIME_WAIT get reused
    assert left_behind(lab) == {"sockets": 0, "renewed": 0}
    assert closekit.run("close-default", lab=lab).states("client")[-1] == "TIME_WAIT"


def test_the_experiments_own_time_wait_is_gone_before_the_next_run(lab):
    assert closekit.run("close-default", lab=lab).states("client")[-1] == "TIME_WAIT"
    assert left_behind(lab) == {"sockets": 0, "renewed": 0}
