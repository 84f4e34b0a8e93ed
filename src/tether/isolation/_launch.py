"""Launch a non-Python worker under the same confinement as a Python one.

    python -m tether.isolation._launch POLICY_JSON -- PROGRAM [ARGS...]

applies ``POLICY_JSON`` (:meth:`Policy.to_json`) with :func:`tether.isolation._sandbox.
apply`'s steps, then execs ``PROGRAM`` (which must be one of ``policy.executable``). The
launcher must exec once, so seccomp leaves ``execve`` open here; what stops the program
from executing anything else is Landlock's execute right, granted only on the
``executable`` paths and their ELF interpreter (``ld-linux``). The program may read the
policy's read paths, its own directory, the shared-library directories and
``/etc/ld.so.cache``. Exit status 126 (and a line on stderr) when the policy cannot be
applied or the program cannot be started.
"""

from __future__ import annotations

import os
import sys

from tether.isolation._sandbox import Policy, SandboxError, _apply, interpreter_paths

__all__ = ["main"]

_CANNOT_RUN = 126
_USAGE = "usage: python -m tether.isolation._launch POLICY_JSON -- PROGRAM [ARGS...]"


def _program_paths(program: str) -> list[str]:
    """What the program needs to read: its directory and the library directories."""
    library_dirs = [p for p in interpreter_paths() if not p.startswith(sys.prefix)]
    return [os.path.dirname(os.path.realpath(program)), *library_dirs]  # noqa: PTH120


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":  # noqa: PLR2004 - POLICY -- PROGRAM
        print(_USAGE, file=sys.stderr)
        return 2
    try:
        policy = Policy.from_json(args[0])
    except (ValueError, TypeError) as exc:
        print(f"tether launcher: the policy is not valid JSON for a Policy: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    program = args[2]
    allowed = {os.path.realpath(p) for p in policy.executable}
    if os.path.realpath(program) not in allowed:
        print(
            f"tether launcher: plugin '{policy.plugin}': {program} is not among the policy's "
            f"executables ({', '.join(sorted(allowed)) or 'none'})",
            file=sys.stderr,
        )
        return _CANNOT_RUN
    try:
        _apply(policy, exec_by_landlock=True, read_extra=_program_paths(program))
    except (SandboxError, OSError) as exc:
        print(f"tether launcher: {exc}", file=sys.stderr)
        return _CANNOT_RUN
    sys.stdout.flush()
    try:
        os.execv(program, args[2:])  # noqa: S606 - the policy's own executable
    except OSError as exc:
        print(f"tether launcher: plugin '{policy.plugin}': cannot run {program}: {exc}",
              file=sys.stderr)  # fmt: skip
    return _CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
