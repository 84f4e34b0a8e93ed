"""``tether doctor``: what this host's kernel offers process plugins, and what it means.

It prints the Landlock ABI, seccomp, the namespaces a worker can enter, the cgroup
controllers tether can write (v1 and v2), whether a uid drop is possible, the rlimits,
and the verdict for ``isolation: process`` plugins: ``enforced`` (every permission and
limit holds), or ``refused`` with what is missing (such plugins then load only when the
config allows best-effort isolation, and get what the kernel offers). Exit status 0
either way: it reports, it does not judge the config.
"""

from __future__ import annotations

import json
import platform

import click

from tether.cli._output import out

__all__ = ["doctor"]


def _yes(value: bool) -> str:
    return "yes" if value else "[bold red]no[/]"


@click.command("doctor")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def doctor(fmt: str) -> None:
    """What this host's kernel offers process plugins (Landlock, seccomp, namespaces,
    cgroups, uid drop, rlimits) and whether their isolation is enforced."""
    from tether.isolation import assess, probe

    features = probe()
    assessment = assess(features)
    if fmt == "json":
        data = {
            "kernel": platform.release(),
            **features.to_dict(),
            "process_plugins": {
                "verdict": assessment.verdict,
                "missing": list(assessment.missing),
                "limits": assessment.limits,
            },
        }
        click.echo(json.dumps(data, indent=2))
        return
    landlock = f"ABI {features.landlock_abi}" if features.landlock else "[bold red]none[/]"
    rows = [
        ("kernel", f"{platform.release()} ({features.arch})"),
        ("Landlock", landlock),
        ("seccomp filters", _yes(features.seccomp)),
        ("namespaces", ", ".join(features.namespaces) or "[bold red]none[/]"),
        ("cgroup v1 (writable)", ", ".join(features.cgroup_v1) or "none"),
        ("cgroup v2 (writable)", ", ".join(features.cgroup_v2) or "none"),
        ("uid drop", _yes(features.uid_drop)),
        ("rlimits", ", ".join(features.rlimits)),
    ]
    for name, value in rows:
        out.print(f"{name + ':':<22} {value}")
    out.print()
    verdict = {"enforced": "[bold green]enforced[/]"}.get(
        assessment.verdict, "[bold red]refused[/] unless the config allows best-effort"
    )
    out.print(f"isolation: process plugins: {verdict}")
    for item in assessment.missing:
        out.print(f"  missing: {item}")
    for limit, how in assessment.limits.items():
        out.print(f"  {limit + ':':<12} {how}")
