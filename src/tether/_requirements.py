"""A plugin's ``requirements`` (PEP 508) against the host's environment.

:func:`applicable` keeps the requirements whose markers hold on this interpreter (the
others are ignored, as pip ignores them). :func:`check_host_requirements` is what an
in-process plugin gets: each applicable requirement must be met by a distribution
installed where tether runs (``importlib.metadata``), or the load is refused before any
of the plugin's code is imported, with an error naming both sides: the plugin's
requirement, and what the host has (and which installed distributions require that).
A process plugin gets an environment of its own instead (``tether.isolation._venv``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tether._manifest import Manifest
from tether.errors import PluginLoadError

__all__ = ["applicable", "check_host_requirements", "normalized", "requirers"]

_NO_EXTRA = {"extra": ""}
_REQUIRERS_SHOWN = 3


def applicable(requirements: Iterable[str]) -> list[Requirement]:
    """The requirements whose environment markers hold here (all those without one)."""
    parsed = [Requirement(text) for text in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(_NO_EXTRA)]


def normalized(requirement: Requirement) -> str:
    """One spelling per requirement (canonical name, sorted extras and specifiers), for
    hashing: ``Foo_Bar >= 1 , <2`` and ``foo-bar<2,>=1`` are the same."""
    extras = f"[{','.join(sorted(canonicalize_name(e) for e in requirement.extras))}]"
    text = canonicalize_name(requirement.name) + (extras if requirement.extras else "")
    if requirement.url:
        text += f" @ {requirement.url}"
    text += str(requirement.specifier)
    if requirement.marker is not None:
        text += f"; {requirement.marker}"
    return text


def check_host_requirements(manifest: Manifest) -> None:
    """Refuse an in-process plugin whose requirements the host's environment does not
    meet: a missing distribution, or an installed version the requirement excludes."""
    for requirement in applicable(manifest.requirements):
        _check_one(manifest, requirement)


def _check_one(manifest: Manifest, requirement: Requirement, via: str = "") -> None:
    """``requirement`` met by the host, and the requirements of the extras it asks for
    (``via``: the requirement with extras this one comes from, for the message)."""
    name = manifest.name
    asked = f"'{requirement}'" + (f" (for '{via}')" if via else "")
    try:
        dist = metadata.distribution(requirement.name)
    except metadata.PackageNotFoundError:
        raise PluginLoadError(
            f"plugin '{name}' requires {asked} (its manifest's `requirements`), but the "
            f"host's environment ({sys.prefix}) has no distribution named "
            f"'{requirement.name}'",
            plugin=name,
            path=manifest.source,
            hint=f"install it where tether runs (pip install '{requirement}'), or give the "
            "plugin `isolation: process` to have it installed in an environment of its own",
        ) from None
    installed = dist.version
    if not requirement.specifier.contains(installed, prereleases=True):
        who = requirers(requirement.name, installed)
        because = f", which {_listed(who)} require{'s' if len(who) == 1 else ''}" if who else ""
        raise PluginLoadError(
            f"plugin '{name}' requires {asked} (its manifest's `requirements`), but the "
            f"host's environment ({sys.prefix}) has {requirement.name} {installed} "
            f"installed{because}",
            plugin=name,
            path=manifest.source,
            hint="both cannot be imported in one process: give the plugin `isolation: "
            "process` (its requirements then get an environment of their own), or install a "
            f"{requirement.name} that satisfies both in the host's environment",
        )
    for extra in sorted(requirement.extras):
        for needed in _extra_requirements(dist, extra):
            _check_one(manifest, needed, via or str(requirement))


def _extra_requirements(dist: metadata.Distribution, extra: str) -> list[Requirement]:
    """What ``dist`` requires for ``extra`` only (markers holding here)."""
    wanted = canonicalize_name(extra)
    found = []
    for text in dist.requires or ():
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if marker is None or marker.evaluate(_NO_EXTRA):
            continue  # not the extra's own
        if marker.evaluate({"extra": wanted}):
            requirement.marker = None
            found.append(requirement)
    return found


def requirers(distribution: str, version: str) -> list[str]:
    """The installed distributions that require ``distribution`` at a set of versions
    that includes ``version`` (the installed one), as ``"bar 1.2 ('foo>=2')"``."""
    wanted = canonicalize_name(distribution)
    try:
        parsed = Version(version)
    except InvalidVersion:
        return []
    found: set[str] = set()
    for dist in metadata.distributions():
        for text in dist.requires or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if canonicalize_name(requirement.name) != wanted or not requirement.specifier:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(_NO_EXTRA):
                continue
            if requirement.specifier.contains(parsed, prereleases=True):
                found.add(f"{dist.metadata['Name']} {dist.version} ('{requirement}')")
    return sorted(found)


def _listed(names: list[str]) -> str:
    shown = names[:_REQUIRERS_SHOWN]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")
