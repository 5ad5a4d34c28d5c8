"""Three forgeries of a hostile student (issue 20): functions started with at_once() that rewrite the
endpoint's own code, so that its records say what the student wants. tests/test_forgery.py proves each
forges its records and that no exercise grades on them; benchmarks/soak.py tries them in every mode."""

from __future__ import annotations

from closekit import steps as s


def nothing(sock):
    return "nothing"


def claim_a_million(sock):
    import closekit.sandbox.endpoint as endpoint

    endpoint._read_to_eof = lambda _sock: 1_000_000
    return "patched"


def close_nothing(sock):
    import closekit.sandbox.endpoint as endpoint

    endpoint.Endpoint.close = lambda _self, _listener: 0
    return "patched"


def sleep_in_close(sock):
    import time

    import closekit.sandbox.endpoint as endpoint

    endpoint.Endpoint.close = lambda _self, _listener: time.sleep(1) or 0
    return "patched"


FORGERIES = {
    "write_the_fix": (
        s.at_once(s.call("client", nothing), s.call("server", claim_a_million)),
        s.read_to_eof("server"),
        s.close("server"),
        s.close("client"),
    ),
    "no_fin_close": (s.at_once(s.call("client", close_nothing), s.call("server", nothing)), s.close("client")),
    "one_second_close": (s.at_once(s.call("client", sleep_in_close), s.call("server", nothing)), s.close("client")),
}
