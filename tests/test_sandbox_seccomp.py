"""The hand-built seccomp filter: its syscall tables against the kernel headers, and its
program's shape (real enforcement is shown by tests/test_sandbox.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether.isolation._seccomp import ALWAYS_DENIED, ARCHES, build_filter

HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),  # aarch64 uses the generic table
}


def _numbers(header: Path) -> dict[str, int]:
    text = header.read_text()
    found = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)\b", text)}
    found |= {m[1]: int(m[2]) for m in re.finditer(r"#define __NR3264_(\w+)\s+(\d+)\b", text)}
    return found


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_syscall_numbers_match_the_kernel_headers(arch):
    header = HEADERS[arch]
    if not header.exists():
        pytest.skip(f"{header} is not installed (linux-libc-dev)")
    numbers = _numbers(header)
    _, table = ARCHES[arch]
    wrong = {name: (nr, numbers.get(name)) for name, nr in table.items() if numbers.get(name) != nr}
    assert wrong == {}


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_every_always_denied_syscall_has_a_number_or_does_not_exist_there(arch):
    _, table = ARCHES[arch]
    missing = [name for name in ALWAYS_DENIED if name not in table]
    assert set(missing) <= {"iopl", "ioperm"}  # x86-only calls


def test_the_program_is_whole_instructions_and_shorter_with_permissions():
    strict = build_filter(exec_allowed=False, network=False, arch="x86_64")
    loose = build_filter(exec_allowed=True, network=True, arch="x86_64")
    assert len(strict) % 8 == 0
    assert len(loose) < len(strict)
    assert len(strict) // 8 < 4096  # BPF_MAXINSNS


def test_an_unknown_architecture_is_an_error():
    with pytest.raises(OSError, match="no seccomp syscall table for architecture riscv64"):
        build_filter(exec_allowed=False, network=False, arch="riscv64")
