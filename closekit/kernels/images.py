"""The guest's disks: an initramfs per kernel, and read-only ext4 images of what runs inside.

- The **initramfs** holds a static busybox, the init script (init.sh) and the kernel's modules the
  lab needs, decompressed and numbered in load order. One per kernel release, cached.
- The **runtime image** holds this machine's Python (the interpreter, its standard library and the
  shared libraries they load) at the same paths as here, so the guest runs the very interpreter
  the course runs on the host. With `venv=True` it also holds the virtual environment closekit is
  installed in and graphviz's `dot` (what pytest and nbval need). Cached by what went into it.
- The **course image** holds the repository (closekit, the notebooks, the tests) at its path here,
  as git sees it (tracked files and new ones it does not ignore), with its Python modules compiled
  (hash-checked .pyc files: the guest's disks are read-only and its root is new at every boot, so
  without them every process would compile what it imports, seconds under TCG). Rebuilt only when
  a file changed.

In the guest the course image lies over the runtime image in an overlay whose upper layer is a
tmpfs, so the root is writable and paths are the host's. The images are built with `mke2fs -d`
from a staging tree of hard links (copies across file systems): no root, no loop mount, no 9p
(Debian's cloud kernels have none).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import importlib.util
import io
import os
import py_compile
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from closekit.errors import CloseKitError
from closekit.kernels.debian import Package
from closekit.kernels.modules import NEEDED, ModuleTree

FORMAT = 2  # bump when what goes into an image changes: cached images of another format are rebuilt
INIT = Path(__file__).with_name("init.sh")
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
# Not needed to run closekit or its tests, and large: the standard library's own tests, the GUI.
STDLIB_LEFT_OUT = {"test", "idlelib", "tkinter", "turtledemo", "site-packages", "dist-packages"}
VENV_LEFT_OUT = ("playwright/driver",)  # a Node.js runtime; the guest drives no browser
REPO_LEFT_OUT = {".venv", ".git", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
ETC = ("ld.so.cache", "ld.so.conf", "hosts", "services", "protocols", "nsswitch.conf", "localtime", "gai.conf")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def repository() -> Path:
    """The course's root: the folder holding the closekit package that is running."""
    import closekit

    return Path(closekit.__file__).resolve().parent.parent


def tool(name: str, package: str) -> str:
    """The path of a program the build runs; sbin too (a user's PATH often lacks it); else one line."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise CloseKitError(f"building the guest needs {name}: apt-get install {package}")
    return found


# ---- the initramfs ----------------------------------------------------------------------------------
def busybox() -> Path:
    """A statically linked busybox (Debian's busybox-static): the guest's shell, mount and insmod."""
    for candidate in BUSYBOX_PATHS:
        path = Path(candidate)
        if path.is_file() and _is_static(path):
            return path
    raise CloseKitError("the guest needs a static busybox: apt-get install busybox-static")


def _is_static(path: Path) -> bool:
    """An ELF executable with no program interpreter (PT_INTERP) is statically linked."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, (phentsize, phnum) = struct.unpack_from("<Q", head, 32)[0], struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") != 3 for i in range(phnum))


class Cpio:
    """A `newc` cpio archive, what the kernel unpacks as its initramfs (several may be concatenated)."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(name) + 1, 0)
        self._ino += 1
        self._out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0")
        self._out.write(b"\0" * (-self._out.tell() % 4))
        self._out.write(data)
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def initramfs(package: Package, cache: Path) -> Path:
    """The kernel's initramfs (gzip), built once per kernel release."""
    target = cache / "initramfs" / f"{package.release}-f{FORMAT}-{_digest(INIT.read_bytes())[:8]}.cpio.gz"
    with _building(target) as partial:
        if partial is None:
            return target
        modules = ModuleTree(package.modules).load_order(NEEDED)
        archive = Cpio()
        for directory in ("bin", "dev", "proc", "sys", "modules"):
            archive.directory(directory)
        archive.device("dev/console", 5, 1)  # the kernel opens it for init before devtmpfs is mounted
        archive.file("bin/busybox", busybox().read_bytes(), 0o755)
        archive.file("init", INIT.read_bytes(), 0o755)
        for i, module in enumerate(modules):
            archive.file(f"modules/{i:02d}-{module.name}.ko", module.elf())
        partial.write_bytes(gzip.compress(archive.bytes(), compresslevel=6, mtime=0))
        for old in target.parent.glob(f"{package.release}-f*.cpio.gz"):  # made by an older init
            old.unlink()
    return target


def job(lines: str) -> bytes:
    """A small uncompressed cpio holding /job: appended to the initramfs, it tells init what to run."""
    archive = Cpio()
    archive.file("job", lines.encode())
    return archive.bytes()


# ---- the ext4 images --------------------------------------------------------------------------------
class Staging:
    """A tree that mirrors chosen host paths (symlinks as symlinks), for `mke2fs -d`."""

    def __init__(self, root: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        self.root = root

    def add(self, path: str | Path) -> None:
        """Add host file `path` at the same path, with every symlink on the way (and the file it names)."""
        self._add(os.path.abspath(path), depth=0)

    def _add(self, path: str, depth: int) -> None:
        if depth > 40:
            raise CloseKitError(f"too many symbolic links on the way to {path}")
        parts = Path(path).parts
        for i in range(2, len(parts) + 1):  # resolve the directories on the way, one symlink at a time
            prefix = os.path.join(*parts[:i])
            if os.path.islink(prefix):
                target = os.readlink(prefix)
                self.link(prefix, target)
                resolved = os.path.normpath(os.path.join(os.path.dirname(prefix), target))
                self._add(os.path.join(resolved, *parts[i:]), depth + 1)
                return
        if os.path.isfile(path):
            self._file(path)
        elif os.path.isdir(path):
            (self.root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def link(self, path: str, target: str) -> None:
        """Add host symlink `path` (pointing at `target`) as it is."""
        here = self.root / path.lstrip("/")
        if not here.is_symlink():
            here.parent.mkdir(parents=True, exist_ok=True)
            here.symlink_to(target)

    def _file(self, path: str) -> None:
        here = self.root / path.lstrip("/")
        if here.exists():
            return
        here.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, here)
        except OSError:
            shutil.copy2(path, here)

    def add_tree(self, top: str | Path, left_out: Iterable[str] = ()) -> None:
        """Add every file under directory `top` (symlinks as they are), but not the relative paths
        `left_out` (a bare name is left out wherever it appears)."""
        top = os.path.realpath(top)
        self.add(top)
        skip = set(left_out)
        for directory, dirs, files in os.walk(top):
            rel = os.path.relpath(directory, top)
            dirs[:] = [d for d in dirs if d not in skip and os.path.normpath(os.path.join(rel, d)) not in skip]
            here = self.root / directory.lstrip("/")
            here.mkdir(parents=True, exist_ok=True)
            for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(directory, d)))]:
                path = os.path.join(directory, name)
                if os.path.islink(path):
                    if not (here / name).is_symlink():
                        (here / name).symlink_to(os.readlink(path))
                elif os.path.isfile(path):
                    self._file(path)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(directory, d))]

    def write(self, relative: str, text: str) -> None:
        here = self.root / relative
        here.parent.mkdir(parents=True, exist_ok=True)
        here.write_text(text)

    def files(self) -> Iterator[Path]:
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                yield Path(directory, name)


def _elf_files(paths: Iterable[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_symlink() or not path.is_file():
            continue
        with open(path, "rb") as f:
            if f.read(4) == b"\x7fELF":
                found.append(path)
    return found


def _libraries(elf: Path) -> set[str]:
    """The shared libraries (and the program interpreter) `elf` loads, as ldd resolves them here."""
    result = subprocess.run([tool("ldd", "libc-bin"), str(elf)], capture_output=True, text=True)
    found = set()
    for line in result.stdout.splitlines():
        words = line.split()
        if "=>" in words and len(words) >= 3 and words[2].startswith("/"):
            found.add(words[2])
        elif words and words[0].startswith("/"):
            found.add(words[0])
    return found


def make_ext4(staging: Path, target: Path, label: str) -> None:
    """`mke2fs -d`: an ext4 image of the staging tree, sized to fit, without a journal (read-only)."""
    blocks, entries = 0, 0
    for directory, dirs, files in os.walk(staging):
        entries += len(dirs) + len(files) + 1
        blocks += 1
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                blocks += -(-os.path.getsize(path) // 4096) + 1
    size_kib = int(blocks * 4 * 1.1) + 32 * 1024
    command = [tool("mke2fs", "e2fsprogs"), "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-b", "4096", "-L", label,
               "-N", str(entries + 4096), "-E", "root_owner=0:0", "-d", str(staging), str(target),
               f"{size_kib}k"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise CloseKitError(f"mke2fs could not build {target.name}: {result.stderr.strip()}")


def runtime_image(cache: Path, venv: bool = False) -> Path:
    """The interpreter's image (see the module's docstring); built once per interpreter and venv."""
    stdlib = sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    roots = [*stdlib, executable]
    dot = shutil.which("dot")
    if venv:
        if sys.prefix == sys.base_prefix:
            raise CloseKitError("--venv: this Python is not running in a virtual environment")
        roots += [sys.prefix, *([dot] if dot else [])]
    site = Path(sysconfig.get_paths()["purelib"])
    installed = sorted(p.name for p in site.glob("*.dist-info")) if venv else []
    key = _digest(repr((FORMAT, venv, sys.version, roots, installed)).encode())[:16]
    target = cache / "images" / f"runtime-{'venv' if venv else 'python'}-{key}.ext4"
    with _building(target) as partial:
        if partial is None:
            return target
        with _staging(cache, partial) as staging:
            _stage_runtime(staging, stdlib, executable, venv, dot)
            make_ext4(staging.root, partial, "closekit-runtime")
        _prune(cache / "images", f"runtime-{'venv' if venv else 'python'}-*.ext4", keep=target)
    return target


def _stage_runtime(staging: Staging, stdlib: list[str], executable: str, venv: bool, dot: str | None) -> None:
    """The interpreter, its standard library (and with `venv` the virtual environment and dot), the shared
    libraries all of them load, and the few /etc files the lab and the loader read."""
    for top in stdlib:
        staging.add_tree(top, STDLIB_LEFT_OUT)
    staging.add(sys.executable)
    staging.add(executable)
    if venv:
        staging.add_tree(sys.prefix, VENV_LEFT_OUT)
        if dot:
            staging.add(dot)
            for plugins in Path("/usr/lib").glob("*/graphviz"):
                staging.add_tree(plugins)
            for fonts in ("/etc/fonts", "/usr/share/fonts", "/usr/share/fontconfig"):
                if os.path.isdir(fonts):
                    staging.add_tree(fonts)
    libraries: set[str] = set()
    for elf in _elf_files(staging.files()):
        libraries |= _libraries(elf)
    for library in sorted(libraries):
        staging.add(library)
    for name in ETC:
        if os.path.exists(f"/etc/{name}"):
            staging.add(f"/etc/{name}")
    staging.write("etc/passwd", PASSWD)
    staging.write("etc/group", GROUP)
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            staging.add(f"/{link}")


def course_files(repo: Path) -> list[Path]:
    """The repository's files as git sees them (tracked, and new ones it does not ignore); without
    git, every file but the caches, builds and the virtual environment."""
    if (repo / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"],
                                capture_output=True, text=True)  # fmt: skip
        if listed.returncode == 0:
            names = [n for n in listed.stdout.split("\0") if n and not set(Path(n).parts) & REPO_LEFT_OUT]
            return [repo / n for n in names if (repo / n).is_file() or (repo / n).is_symlink()]
    found = []
    for directory, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in REPO_LEFT_OUT]
        found += [Path(directory, f) for f in files]
    return found


def course_image(cache: Path, repo: Path | None = None) -> Path:
    """The repository's image; rebuilt when any of its files changed (the last few are kept)."""
    repo = (repo or repository()).resolve()
    files = sorted(course_files(repo))
    listing = "\n".join(f"{p} {p.lstat().st_size} {p.lstat().st_mtime_ns}" for p in files)
    key = f"{FORMAT}{sys.implementation.cache_tag}{repo}{listing}"
    target = cache / "images" / f"course-{_digest(key.encode())[:16]}.ext4"
    with _building(target) as partial:
        if partial is None:
            return target
        with _staging(cache, partial) as staging:
            staging.add(repo)
            for path in files:
                if path.is_symlink():
                    staging.link(str(path), os.readlink(path))
                else:
                    staging.add(path)
                    if path.suffix == ".py":
                        _compile(staging, path)
            make_ext4(staging.root, partial, "closekit-course")
        _prune(cache / "images", "course-*.ext4", keep=target, also=1)  # another run may be booting from one
    return target


def _compile(staging: Staging, source: Path) -> None:
    """Put a .pyc of `source` where Python looks for it (`__pycache__`), checked against the source's
    hash rather than its time; a file that does not compile is left to fail in the guest as it would here."""
    cached = staging.root / importlib.util.cache_from_source(str(source)).lstrip("/")
    mode = py_compile.PycInvalidationMode.CHECKED_HASH
    try:
        py_compile.compile(str(source), cfile=str(cached), dfile=str(source), doraise=True, invalidation_mode=mode)
    except py_compile.PyCompileError:
        pass


@contextmanager
def _staging(cache: Path, partial: Path) -> Iterator[Staging]:
    """A staging tree for one image, removed when the block ends, whatever happened in it."""
    staging = Staging(cache / "staging" / partial.name)
    try:
        yield staging
    finally:
        shutil.rmtree(staging.root, ignore_errors=True)


def _prune(folder: Path, pattern: str, keep: Path, also: int = 0) -> None:
    """Remove older images of one kind: all but `keep` and the `also` newest others."""
    others = sorted((p for p in folder.glob(pattern) if p != keep), key=lambda p: p.stat().st_mtime)
    for old in others[: len(others) - also]:
        old.unlink(missing_ok=True)


# ---- building once, even with two runs at a time ----------------------------------------------------
@contextmanager
def _building(target: Path) -> Iterator[Path | None]:
    """Yield None if `target` exists, else a temporary path to build it at (renamed into place when
    the block ends without an error); a lock keeps two processes from building the same thing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:  # one build at a time in a folder: they are rare
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            yield None
            return
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        try:
            yield partial
            partial.rename(target)
        finally:
            partial.unlink(missing_ok=True)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
