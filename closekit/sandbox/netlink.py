"""The few netlink requests the lab makes: an address, a route's metrics.

Each is one fixed C struct plus attributes, packed with `struct`: a general netlink library would
cost more to import than all of these take to run (microseconds each).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

_NLMSGHDR = struct.Struct("=IHHII")
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_REPLACE = 0x1, 0x4, 0x200, 0x400, 0x100
NLMSG_ERROR = 2
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 20, 21, 24, 25
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_PREFSRC, RTA_METRICS = 1, 4, 7, 8
RTAX = {"rto_min": 13, "quickack": 15}
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
RTPROT_KERNEL = 2
RT_SCOPE_LINK, RT_SCOPE_HOST = 253, 254
RTN_UNICAST, RTN_LOCAL = 1, 2
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFMTU = 0x8913, 0x8914, 0x8922
IFF_UP = 0x1


def attribute(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def request(sock: socket.socket, kind: int, flags: int, body: bytes) -> bytes:
    """Send one request and return the first reply; an error reply raises OSError."""
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, 1, 0) + body)
    reply = sock.recv(65536)
    _length, reply_kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(reply)
    if reply_kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
        if error:
            raise OSError(-error, os.strerror(-error))
    return reply


def route_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)


def interface_up(name: str, mtu: int | None = None) -> None:
    """`ip link set NAME up [mtu N]` for the current network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        raw = name.encode()
        if mtu is not None:
            fcntl.ioctl(s.fileno(), SIOCSIFMTU, struct.pack("16si12x", raw, mtu))
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", raw, 0)))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", raw, flags | IFF_UP))


def add_point_to_point(sock: socket.socket, ifindex: int, local: str, peer: str, add: bool = True) -> None:
    """`ip addr add LOCAL peer PEER dev IFINDEX`: the address plus a /32 route to the peer (or, with
    add=False, `ip addr del`, which takes the route with it)."""
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, ifindex)
    body += attribute(IFA_LOCAL, socket.inet_aton(local)) + attribute(IFA_ADDRESS, socket.inet_aton(peer))
    if add:
        request(sock, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
    else:
        request(sock, RTM_DELADDR, NLM_F_ACK, body)


def set_route_metrics(sock: socket.socket, route: RouteSpec, metrics: dict[str, int], delete: bool = False) -> None:
    """Replace the route to the peer with one carrying `metrics` (or, with delete=True, remove it)."""
    table, kind, scope, dst, oif, prefsrc = route
    attributes = attribute(RTA_DST, socket.inet_aton(dst)) + attribute(RTA_OIF, struct.pack("=I", oif))
    if prefsrc:
        attributes += attribute(RTA_PREFSRC, socket.inet_aton(prefsrc))
    if metrics:
        nested = b"".join(attribute(RTAX[name], struct.pack("=I", value)) for name, value in sorted(metrics.items()))
        attributes += attribute(RTA_METRICS, nested)
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, table, RTPROT_KERNEL, scope, kind, 0) + attributes
    if delete:
        request(sock, RTM_DELROUTE, NLM_F_ACK, body)
    else:
        request(sock, RTM_NEWROUTE, NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE, body)


# (table, route type, scope, destination, output interface index, preferred source or "")
RouteSpec = tuple[int, int, int, str, int, str]


def peer_route(ifindex: int, peer: str) -> RouteSpec:
    """The /32 route a point-to-point address makes to its peer."""
    return (RT_TABLE_MAIN, RTN_UNICAST, RT_SCOPE_LINK, peer, ifindex, "")


def loopback_route(address: str) -> RouteSpec:
    """The local route to a loopback address (both endpoints on one loopback)."""
    return (RT_TABLE_LOCAL, RTN_LOCAL, RT_SCOPE_HOST, address, 1, address)
