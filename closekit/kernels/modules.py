"""The kernel modules a guest needs, read from a Debian kernel package without running it.

Debian's package has no modules.dep (depmod writes it when the package is installed), so each
module's dependencies are read from its own `.modinfo` section (`depends=a,b`). Modules come
compressed in newer packages (`.ko.xz`, `.ko.zst`); the guest's busybox `insmod` takes plain
ELF, so they are decompressed here, on the host, once.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from dataclasses import dataclass
from pathlib import Path

from closekit.errors import CloseKitError

# What the lab needs in the guest: the wire's TUN devices, sock_diag for TCP sockets (states,
# queues, timers, SOCK_DESTROY), and what the guest needs to reach its disks (virtio block
# devices, ext4, the overlay that makes the read-only images a writable root).
NEEDED = ("virtio_pci", "virtio_blk", "ext4", "overlay", "tun", "inet_diag", "tcp_diag")
SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


class MissingModuleError(CloseKitError):
    """A module the guest needs is neither built into the kernel nor in its package."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path  # in the extracted package (maybe compressed)

    def elf(self) -> bytes:
        """The module as plain ELF, what init_module() takes."""
        data = self.path.read_bytes()
        suffix = self.path.name.rsplit(".ko", 1)[1]
        if suffix == ".xz":
            return lzma.decompress(data)
        if suffix == ".gz":
            return gzip.decompress(data)
        if suffix == ".zst":
            return _unzstd(data)
        return data


def _unzstd(data: bytes) -> bytes:
    import subprocess

    try:
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise CloseKitError(f"could not decompress a .ko.zst module (install zstd): {e}") from None


def canonical(name: str) -> str:
    """modprobe's rule: '-' and '_' are the same in a module name."""
    return name.replace("-", "_")


def modinfo(elf: bytes) -> dict[str, str]:
    """The key=value strings of a module's .modinfo section (the first value of each key)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise CloseKitError("not a 64-bit ELF module")
    endian = "<" if elf[5] == 1 else ">"
    (shoff,) = struct.unpack_from(endian + "Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _t, _f, _a, offset, size = struct.unpack_from(endian + "IIQQQQ", elf, shoff + i * shentsize)
        return name, offset, size

    _n, names_at, _s = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = elf.index(b"\0", names_at + name)
        if elf[names_at + name : end] == b".modinfo":
            info: dict[str, str] = {}
            for entry in elf[offset : offset + size].split(b"\0"):
                key, eq, value = entry.decode(errors="replace").partition("=")
                if eq:
                    info.setdefault(key, value)
            return info
    return {}


class ModuleTree:
    """The modules of one extracted package: /lib/modules/RELEASE."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.release = root.name
        builtin = root / "modules.builtin"
        self.builtin = {
            canonical(Path(line).name.split(".ko")[0]) for line in builtin.read_text().split() if line
        } if builtin.is_file() else set()  # fmt: skip
        self.files: dict[str, Path] = {}
        for path in sorted((root / "kernel").rglob("*.ko*")):
            if path.name.endswith(SUFFIXES):
                self.files.setdefault(canonical(path.name.split(".ko")[0]), path)

    def load_order(self, names: tuple[str, ...] = NEEDED) -> list[Module]:
        """The modules to insmod, dependencies first, for `names`; built-in ones are left out.
        MissingModuleError names a module the kernel has neither built in nor in its package."""
        order: list[Module] = []
        seen: set[str] = set()

        def visit(name: str, wanted_by: str | None) -> None:
            name = canonical(name)
            if name in seen or name in self.builtin:
                return
            seen.add(name)
            path = self.files.get(name)
            if path is None:
                why = f" (needed by {wanted_by})" if wanted_by else ""
                raise MissingModuleError(
                    f"Linux {self.release} has no module {name}{why}: it is neither built in nor in its package"
                )
            module = Module(name, path)
            for dep in filter(None, modinfo(module.elf()).get("depends", "").split(",")):
                visit(dep, name)
            order.append(module)

        for name in names:
            visit(name, None)
        return order
