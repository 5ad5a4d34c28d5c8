"""Debian's kernel packages, by version: which package a version names, fetched and unpacked once.

`6.1` is Debian 12's own kernel (the newest `linux-image-6.1.0-N-FLAVOR` the package lists carry),
`6.12` the newest `linux-image-6.12.N+deb12-FLAVOR` (Debian 13's series, which Debian 12's
bookworm-security also carries); `6.1.0-57` or `6.12.118` name one build. The package is fetched
with `apt-get download` and unpacked with `dpkg -x` into the cache: nothing is installed, /boot is
left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from closekit.errors import CloseKitError, UsageError

FLAVOR = "cloud-amd64"  # virtio built in, fewer modules: the smallest of Debian's kernels that boots in qemu
_SPEC = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+)(?:-(\d+))?)?$")


@dataclass(frozen=True)
class Package:
    """One Debian kernel package, unpacked: its release (`uname -r`), version and files."""

    name: str  # linux-image-6.1.0-57-cloud-amd64
    version: str  # the Debian version, 6.1.192-3
    release: str  # 6.1.0-57-cloud-amd64
    root: Path  # where it is unpacked

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def cache_dir() -> Path:
    """Where packages, guest images and results are kept: $CLOSEKIT_KERNELS_CACHE, else
    $XDG_CACHE_HOME/closekit/kernels (~/.cache/closekit/kernels)."""
    if os.environ.get("CLOSEKIT_KERNELS_CACHE"):
        return Path(os.environ["CLOSEKIT_KERNELS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "closekit" / "kernels"


def _numbers(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def matches(spec: str, name: str, flavor: str = FLAVOR) -> bool:
    """Does package `name` (linux-image-…) carry the kernel `spec` (6.1, 6.12, 6.1.0-57, 6.12.118)?"""
    m = _SPEC.match(spec)
    if m is None or not name.startswith("linux-image-") or not name.endswith("-" + flavor):
        return False
    release = name.removeprefix("linux-image-").removesuffix("-" + flavor)
    major, minor, patch, abi = m.groups()
    if (major, minor) == ("6", "1"):  # Debian 12's numbering: 6.1.0-ABI
        found = re.fullmatch(r"6\.1\.0-(\d+)", release)
        return bool(found) and patch in (None, "0") and abi in (None, found.group(1))
    found = re.fullmatch(rf"{major}\.{minor}\.(\d+)\+deb\d+", release)
    return bool(found) and abi is None and patch in (None, found.group(1))


def check_spec(spec: str) -> None:
    if _SPEC.match(spec) is None:
        raise UsageError(f"{spec!r} is not a kernel version; give e.g. 6.1, 6.12, 6.1.0-57 or 6.12.118")


def resolve(spec: str, flavor: str = FLAVOR) -> str:
    """The newest package in apt's lists that carries kernel `spec`."""
    check_spec(spec)
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        raise CloseKitError("finding Debian's kernel packages needs apt-cache (a Debian or Ubuntu machine)")
    names = subprocess.run([apt_cache, "pkgnames", "linux-image-"], capture_output=True, text=True).stdout.split()
    found = sorted((n for n in names if matches(spec, n, flavor)), key=_numbers)
    if not found:
        raise CloseKitError(
            f"apt's package lists carry no linux-image-*-{flavor} for Linux {spec} "
            "(run apt-get update; Debian 12's lists carry 6.1 and, in bookworm-security, 6.12)"
        )
    return found[-1]


def fetch(spec: str, flavor: str = FLAVOR, cache: Path | None = None) -> Package:
    """Download and unpack the package for `spec` (once; a later call finds it in the cache)."""
    name = resolve(spec, flavor)
    cache = cache or cache_dir()
    root = cache / "packages" / name
    if not (root / ".done").is_file():
        _download_and_unpack(name, root)
    version = (root / ".done").read_text().strip()
    release = name.removeprefix("linux-image-")
    package = Package(name, version, release, root)
    if not package.vmlinuz.is_file():
        raise CloseKitError(f"{name} has no {package.vmlinuz.relative_to(root)}; not a kernel image package?")
    return package


def _download_and_unpack(name: str, root: Path) -> None:
    from closekit.kernels.images import tool

    downloads = root.parent / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for old in downloads.glob(f"{name}_*.deb"):
        old.unlink()
    quiet = "APT::Sandbox::User=root" if os.geteuid() == 0 else "Debug::NoLocking=1"  # no _apt, no lock
    result = subprocess.run([tool("apt-get", "apt"), "download", "-o", quiet, name], cwd=downloads,
                            capture_output=True, text=True)  # fmt: skip
    debs = sorted(downloads.glob(f"{name}_*.deb"))
    if result.returncode != 0 or not debs:
        raise CloseKitError(f"apt-get download {name} failed: {result.stderr.strip().splitlines()[-1:] or '?'}")
    deb = debs[-1]
    dpkg_deb = tool("dpkg-deb", "dpkg")
    version = subprocess.run([dpkg_deb, "-f", str(deb), "Version"], capture_output=True, text=True).stdout.strip()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run([dpkg_deb, "-x", str(deb), str(root)], check=True)
    deb.unlink()
    (root / ".done").write_text(version + "\n")
