"""Other kernels: Debian's packages by version, the guest's pieces, qemu, and the ledger across kernels.

The unit tests need nothing but Python. The guest tests need qemu-system-x86_64, a static busybox and
apt's package lists (`bash course.sh test` installs them); where they are missing they say so. The
stored table (closekit/kernels/ledger.json) is checked against a fresh run on this kernel, and Debian
12's kernel (6.1) runs the whole ledger in a VM and must give the stored column's verdicts.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from closekit import claims
from closekit.errors import CloseKitError, UsageError
from closekit.kernels import debian, guest, images, ledger
from closekit.kernels.modules import MissingModuleError, ModuleTree, canonical, modinfo


# ---- which package a version names ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "name", "expected"),
    [
        ("6.1", "linux-image-6.1.0-57-cloud-amd64", True),
        ("6.1.0-57", "linux-image-6.1.0-57-cloud-amd64", True),
        ("6.1.0-56", "linux-image-6.1.0-57-cloud-amd64", False),
        ("6.12", "linux-image-6.12.118+deb12-cloud-amd64", True),
        ("6.12.118", "linux-image-6.12.118+deb12-cloud-amd64", True),
        ("6.12.117", "linux-image-6.12.118+deb12-cloud-amd64", False),
        ("6.1", "linux-image-6.12.118+deb12-cloud-amd64", False),
        ("6.12", "linux-image-6.12.118+deb12-amd64", False),  # another flavor
        ("6.1", "linux-image-6.1.0-57-cloud-amd64-dbg", False),
    ],
)
def test_a_version_names_the_debian_packages_that_carry_it(spec, name, expected):
    assert debian.matches(spec, name) is expected


@pytest.mark.parametrize("spec", ["6", "6.x", "latest", "6.1;rm", ""])
def test_a_version_that_is_not_one_is_refused_with_examples(spec):
    with pytest.raises(UsageError, match=r"give e\.g\. 6\.1, 6\.12"):
        debian.check_spec(spec)


# ---- the modules the guest loads ----------------------------------------------------------------------
def _module(info: dict[str, str]) -> bytes:
    """A minimal 64-bit ELF with a .modinfo section (what modinfo() reads of a real .ko)."""
    modinfo_data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in info.items())
    names = b"\0.modinfo\0.shstrtab\0"
    body_at = 64
    names_at = body_at + len(modinfo_data)
    sections_at = names_at + len(names)
    header = (
        b"\x7fELF"
        + bytes([2, 1, 1])
        + bytes(9)
        + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, sections_at, 0, 64, 0, 0, 64, 3, 2)
    )
    null = bytes(64)
    section = struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, body_at, len(modinfo_data), 0, 0, 1, 0)
    strtab = struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    return header + modinfo_data + names + null + section + strtab


def test_modinfo_reads_a_modules_dependencies():
    assert modinfo(_module({"name": "tcp_diag", "depends": "inet_diag"}))["depends"] == "inet_diag"


def _tree(tmp_path: Path, modules: dict[str, str], builtin: tuple[str, ...] = ()) -> ModuleTree:
    root = tmp_path / "6.1.0-99-cloud-amd64"
    for i, (name, depends) in enumerate(modules.items()):
        path = root / "kernel" / "net" / f"{name.replace('_', '-')}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _module({"depends": depends, "name": name})
        if i % 2:  # packages compress some modules: the same ELF comes out
            path.with_suffix(".ko.xz").write_bytes(lzma.compress(data))
        else:
            path.write_bytes(data)
    (root / "modules.builtin").write_text("".join(f"kernel/fs/{b}.ko\n" for b in builtin))
    return ModuleTree(root)


def test_modules_load_dependencies_first_and_leave_built_in_ones_out(tmp_path):
    tree = _tree(tmp_path, {"tun": "", "inet_diag": "", "tcp_diag": "inet_diag", "overlay": "", "virtio_blk": ""},
                 builtin=("ext4", "virtio_pci"))  # fmt: skip
    order = [m.name for m in tree.load_order(("virtio_pci", "ext4", "overlay", "tcp_diag", "tun"))]
    assert order == ["overlay", "inet_diag", "tcp_diag", "tun"]
    assert all(m.elf().startswith(b"\x7fELF") for m in tree.load_order(("tcp_diag",)))
    assert canonical("inet-diag") == "inet_diag"


def test_a_missing_module_is_one_line_naming_it_and_who_needs_it(tmp_path):
    tree = _tree(tmp_path, {"tcp_diag": "inet_diag"})
    with pytest.raises(MissingModuleError, match=r"^Linux 6.1.0-99-cloud-amd64 has no module inet_diag \(needed by "
                       r"tcp_diag\): it is neither built in nor in its package$"):  # fmt: skip
        tree.load_order(("tcp_diag",))


# ---- the initramfs and the job ---------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("cpio") is None and shutil.which("busybox") is None, reason="no cpio to read it")
def test_the_initramfs_archive_is_one_cpio_reads(tmp_path):
    archive = images.Cpio()
    archive.directory("bin")
    archive.file("bin/hello", b"hi\n", 0o755)
    archive.device("dev/console", 5, 1)
    path = tmp_path / "a.cpio"
    path.write_bytes(archive.bytes())
    tool = ["cpio"] if shutil.which("cpio") else ["busybox", "cpio"]
    with open(path, "rb") as archive_file:
        listed = subprocess.run([*tool, "-t"], stdin=archive_file, capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["bin", "bin/hello", "dev/console"]


def test_the_job_runs_the_command_line_exactly_as_given(tmp_path):
    argv = ["-c", "import sys; print(sys.argv[1:])", "a b", "'quoted'", "$HOME", "--"]
    lines = guest.job_lines(argv, timeout=5, venv=False, repo=tmp_path)
    shell = shutil.which("sh")
    words = subprocess.run([shell, "-c", lines + 'for w in "$@"; do printf "%s\\0" "$w"; done'],
                           capture_output=True, text=True, check=True).stdout.split("\0")[:-1]  # fmt: skip
    assert words[-len(argv) :] == argv
    assert words[words.index("-c") + 1] == 'cd "$0" && exec "$@"' and str(tmp_path) in words


# ---- the table ------------------------------------------------------------------------------------------------
def _column(spec: str, status: str, evidence: str, queued: str = "15,656") -> dict:
    return {"spec": spec, "release": f"{spec}.0-1", "version": "#1", "package": "", "where": "host",
            "date": "2026-01-01", "mode": "netns", "seconds": 1.0,
            "verdicts": [{"id": "c", "section": "1", "claim": "x", "scenario": "s", "status": status,
                          "evidence": evidence,
                          "premises": [{"id": "p", "holds": True, "evidence": queued}]}]}  # fmt: skip


def test_the_table_tells_a_difference_of_verdict_from_one_of_durations():
    same = ledger.table([_column("6.1", "holds", "took 40.1 ms"), _column("6.18", "holds", "took 52.0 ms")])
    assert ledger.differences(same["claims"][0]) == []
    verdict = ledger.table([_column("6.1", "holds", "a"), _column("6.18", "differs", "b")])
    assert ledger.differences(verdict["claims"][0]) == ["verdict", "evidence"]
    premise = ledger.table([_column("6.1", "holds", "a", "1"), _column("6.18", "holds", "a", "2")])
    assert ledger.differences(premise["claims"][0]) == ["p"]
    assert "no kernel change recorded for this yet" in ledger.plain(verdict)


# ---- the stored table ---------------------------------------------------------------------------------------
def test_the_stored_table_names_each_kernels_release_and_date():
    data = ledger.load()
    specs = [k["spec"] for k in data["kernels"]]
    assert {"6.1", "6.12"} <= set(specs) and any(s.startswith("6.18") for s in specs)
    for k in data["kernels"]:
        assert k["release"].startswith(k["spec"]) and k["version"].startswith("#") and k["date"][:2] == "20"
    assert data["command"] == ledger.COMMAND.format(kernels=",".join(specs))
    assert {row["id"] for row in data["claims"]} == {c.id for c in claims.CLAIMS}


def test_every_difference_between_kernels_in_the_stored_table_is_explained():
    assert ledger.unexplained(ledger.load()) == []


def test_the_stored_table_has_evidence_for_every_claim_on_every_kernel():
    data = ledger.load()
    assert ledger.evidence_complete(data), [
        (row["id"], s, c["status"]) for row in data["claims"] for s, c in row["on"].items()
        if c["status"] in ledger.NO_EVIDENCE
    ]  # fmt: skip


def _stored_column(data: dict, spec: str) -> dict[str, dict]:
    return {row["id"]: row["on"][spec] for row in data["claims"] if spec in row["on"]}


def test_the_stored_table_holds_on_this_kernel_today(live):
    data = ledger.load()
    spec = next((k["spec"] for k in data["kernels"] if ledger.on_host(k["spec"])), None)
    if spec is None:
        pytest.skip(f"the stored table has no column for Linux {os.uname().release}")
    stored = _stored_column(data, spec)
    fresh = claims.verify(run=live)
    if fresh[0].mode != next(k["mode"] for k in data["kernels"] if k["spec"] == spec):
        pytest.skip(f"the stored column ran in another mode than this machine's ({fresh[0].mode})")
    for v in fresh:
        assert v.status == stored[v.claim.id]["status"], f"{v.claim.id}: {v.evidence}"
        assert [r.holds for r in v.premises] == [p["holds"] for p in stored[v.claim.id]["premises"]]


# ---- the guest ------------------------------------------------------------------------------------------------
def _guest_or_skip() -> None:
    missing = [what for what, ok in (("qemu-system-x86_64", shutil.which(guest.QEMU)),
                                     ("a static busybox", any(os.path.isfile(p) for p in images.BUSYBOX_PATHS)),
                                     ("apt-get", shutil.which("apt-get"))) if not ok]  # fmt: skip
    if missing:
        pytest.skip(f"booting another kernel needs {', '.join(missing)} (bash course.sh test installs them)")


@pytest.fixture(scope="module")
def debian12():
    _guest_or_skip()
    try:
        return debian.fetch("6.1")
    except CloseKitError as e:
        pytest.skip(f"Debian 12's kernel package cannot be had here: {e}")


def test_a_kernel_panic_on_the_console_is_named_with_its_reason(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(  # as CI's 6.1 guest printed it under TCG on a busy host
        b"[    0.048000] Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug\r\n"
        b"[    0.048000]  apic_intr_mode_init+0x101/0x106\r\n[    0.048000]  </TASK>\r\n"
    )
    console = guest._Console(log, None)
    console.read()
    assert console.panic == "IO-APIC + timer doesn't work!  Boot with apic=debug"
    assert not console.booted
    quiet = tmp_path / "quiet.log"
    quiet.write_bytes(b"closekit-guest: booted 6.1\nKernel panic is a word here, not syncing\n")
    console = guest._Console(quiet, None)
    console.read()
    assert console.booted and console.panic == ""


@pytest.mark.vm
def test_a_kernel_that_does_not_boot_is_one_clear_line(debian12, tmp_path):
    root = tmp_path / "pkg"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{debian12.release}").write_bytes(b"\0" * 4096)
    shutil.copytree(debian12.modules, root / "lib" / "modules" / debian12.release)
    broken = debian.Package(debian12.name, debian12.version, debian12.release, root)
    with pytest.raises(guest.GuestError, match=rf"^Linux {debian12.release} in qemu's emulation \(TCG\) did not boot"):
        guest.run(broken, ["-c", "pass"], accel="tcg", timeout=30)


@pytest.mark.vm
def test_a_command_that_outlives_its_timeout_is_killed_and_its_output_comes_back(debian12):
    result = guest.run(debian12, ["-c", "import sys, time; print('started', flush=True); time.sleep(60)"],
                       accel="tcg", timeout=5)  # fmt: skip
    assert result.status == 137  # SIGKILL from the guest's timeout
    assert result.stdout == b"started\n"
    assert result.release == debian12.release and "Debian" in result.version


@pytest.mark.vm
def test_the_ledger_on_debian_12s_kernel_gives_the_stored_verdicts(debian12):
    data = ledger.load()
    stored = _stored_column(data, "6.1")
    column = ledger.run_kernel("6.1", timeout=600, echo=lambda line: print(line, file=sys.stderr))
    assert column["release"] == debian12.release and column["mode"] == "netns"
    for v in column["verdicts"]:
        assert v["status"] == stored[v["id"]]["status"], f"{v['id']} on Linux {column['release']}: {v['evidence']}"
        assert [p["holds"] for p in v["premises"]] == [p["holds"] for p in stored[v["id"]]["premises"]]


@pytest.mark.vm
def test_the_kernels_command_runs_closekit_in_the_guest_and_passes_its_output_through(debian12):
    done = subprocess.run([sys.executable, "-m", "closekit", "kernels", "run", "6.1", "--accel", "tcg", "--", "list"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("close-default")
    assert f"ran on Linux {debian12.release}" in done.stderr


@pytest.mark.vm
def test_the_initramfs_is_gzip_and_built_once(debian12):
    first = images.initramfs(debian12, debian.cache_dir())
    assert gzip.decompress(first.read_bytes())[:6] == b"070701"
    assert images.initramfs(debian12, debian.cache_dir()) == first
    assert json.loads(json.dumps(str(first)))  # a plain path, cached under the kernel's release
    assert debian12.release in first.name


def test_the_table_for_a_notebook_names_each_kernel_and_speaks_the_course_language():
    from closekit import lang

    data = ledger.load()
    with lang.use("en"):
        page = ledger.html(data)
    assert all(k["release"] in page for k in data["kernels"])
    assert page.count("<tr") == len(data["claims"]) + 1
    with lang.use("zh"):
        assert "条论断" in ledger.summary(data)
        assert "成立" in ledger.html(data) and "排队" in ledger.html(data)


def test_a_version_the_host_runs_runs_on_the_host(monkeypatch):
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6.18.44-fc-v1272", "#1", "x86_64")))
    assert ledger.on_host("6.18") and ledger.on_host("6.18.44") and ledger.on_host("host")
    assert not ledger.on_host("6.1") and not ledger.on_host("6.12")


def test_staging_mirrors_a_path_with_its_symlinks(tmp_path):
    real = tmp_path / "usr" / "lib"
    real.mkdir(parents=True)
    (real / "libx.so.1.2").write_text("x")
    (real / "libx.so.1").symlink_to("libx.so.1.2")
    (tmp_path / "lib").symlink_to("usr/lib")
    staging = images.Staging(tmp_path / "stage")
    staging.add(tmp_path / "lib" / "libx.so.1")
    mirrored = tmp_path / "stage" / str(tmp_path).lstrip("/")
    assert (mirrored / "lib").is_symlink() and os.readlink(mirrored / "lib") == "usr/lib"
    assert os.readlink(mirrored / "usr" / "lib" / "libx.so.1") == "libx.so.1.2"
    assert (mirrored / "usr" / "lib" / "libx.so.1.2").read_text() == "x"


def _imports_from(top: Path, module: str) -> tuple[str, str]:
    """(What `python -v` says as it imports `module` from folder `top`, writing no bytecode as in the guest;
    the module's ANSWER)."""
    argv = [sys.executable, "-B", "-v", "-c", f"import {module}; print({module}.ANSWER)"]
    env = {**os.environ, "PYTHONPATH": str(top)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr, done.stdout.strip()


def test_a_course_module_is_staged_with_bytecode_the_guest_loads_while_its_source_is_unchanged(tmp_path):
    source = tmp_path / "course" / "lesson.py"
    source.parent.mkdir()
    source.write_text("ANSWER = 42\n")
    staging = images.Staging(tmp_path / "stage")
    staging.add(source)
    images._compile(staging, source)
    staged = tmp_path / "stage" / str(source).lstrip("/")
    pyc = staged.parent / "__pycache__" / f"lesson.{sys.implementation.cache_tag}.pyc"
    said, answer = _imports_from(staged.parent, "lesson")
    assert f"code object from '{pyc}'" in said and answer == "42"
    when = staged.stat().st_mtime_ns
    staged.unlink()
    staged.write_text("ANSWER = 43\n")
    os.utime(staged, ns=(when, when))  # the same size and time: a timestamp check would load the old code
    said, answer = _imports_from(staged.parent, "lesson")
    assert f"code object from '{pyc}'" not in said and answer == "43"
