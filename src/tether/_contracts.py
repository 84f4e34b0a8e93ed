"""Contracts: what a host accepts from a plugin, registered by hosts as data.

A manifest's ``provides`` names the contracts its plugin fulfils (``provides:
[workload]``). A :class:`Contract` says which methods the entry object must have, what
``initialize`` receives (the plugin's context, or only its config), which lifecycle
methods the manager calls (the rest are the host's), and which host serves it. The
core knows one contract of its own, ``plugin`` (an ordinary plugin: ``initialize(ctx)``,
``start``, ``stop``, ``cleanup``); every other comes from a host:

- through the ``tether.contracts`` entry-point group (``workload = "pkg.mod:CONTRACT"``),
  loaded only when a manifest names it, so that tools reading manifests (``tether
  plugins info``) know every installed host's contracts;
- or registered in code: ``manager.contracts.register(contract)``.

The loader checks an entry object against the contract of its manifest, and the
manager drives its lifecycle by it; neither has a host's name in it.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from tether._registry import NamedRegistry
from tether.errors import ContractError, TetherError
from tether.types import LIFECYCLE_METHODS

__all__ = ["ENTRY_POINT_GROUP", "PLUGIN_CONTRACT", "Contract", "ContractRegistry"]

log = logging.getLogger("tether.contracts")

ENTRY_POINT_GROUP = "tether.contracts"


@dataclass(frozen=True, slots=True)
class Contract:
    """What one kind of plugin provides (see the module docstring).

    ``required`` methods must exist on the entry object; ``optional`` ones are called
    when present. ``initialize_with`` is ``"context"`` (``initialize(ctx)``) or
    ``"config"`` (``initialize(config)``: a plugin that needs no framework services,
    like the reference's workloads). ``managed`` lists the lifecycle methods the
    manager calls; the host calls the others itself (a workload's ``cleanup(db)``).
    ``config_keys`` are keys of the plugin's config the host reads itself (a workload's
    ``operation_weights``): a plugin providing the contract takes them whether or not
    its config schema declares them.
    """

    name: str
    description: str
    required: tuple[str, ...] = LIFECYCLE_METHODS
    optional: tuple[str, ...] = ()
    initialize_with: Literal["context", "config"] = "context"
    managed: tuple[str, ...] = LIFECYCLE_METHODS
    host: str = ""
    config_keys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "required": list(self.required),
            "optional": list(self.optional),
            "initialize_with": self.initialize_with,
            "managed": list(self.managed),
            "host": self.host,
            "config_keys": list(self.config_keys),
        }


PLUGIN_CONTRACT = Contract(
    "plugin",
    "an ordinary plugin: initialize(ctx), start(), stop(), cleanup()",
    host="any host",
)


class ContractRegistry(NamedRegistry[Contract]):
    """The contracts one manager (or one tool) knows, by name."""

    kind = Contract
    group = ENTRY_POINT_GROUP
    label = "contract"
    log = log

    def __init__(self, contracts: Iterable[Contract] = (), *, entry_points: bool = True) -> None:
        super().__init__((PLUGIN_CONTRACT, *contracts), entry_points=entry_points)

    def _not_one(self, item: object) -> TetherError:
        return ContractError(
            f"not a contract: {item!r}",
            hint="register a tether.Contract(name=..., description=..., required=...)",
        )

    def _taken(self, known: Contract, item: Contract) -> TetherError:  # noqa: ARG002
        return ContractError(
            f"two different contracts are registered as '{item.name}'",
            hint="each contract name belongs to one host; rename one of them",
        )

    def get(self, name: str) -> Contract:
        """The contract called ``name`` (``ContractError`` with the known ones otherwise)."""
        contract = self.find(name)
        if contract is None:
            known = [c.name for c in self.all()]
            close = difflib.get_close_matches(name, known, n=1)
            suggestion = f" (did you mean '{close[0]}'?)" if close else ""
            raise ContractError(
                f"unknown contract '{name}'{suggestion}: no host registered it",
                hint=f"known contracts: {', '.join(known)}; install the host that serves "
                f"'{name}', or fix `provides` in the manifest",
            )
        return contract

    def resolve(self, plugin: str, provides: Iterable[str]) -> Contract:
        """The one contract a plugin that ``provides`` these must fulfil.

        No names: ``plugin``. Several: their methods together; they must agree on what
        ``initialize`` receives, and the manager calls only what all of them let it.
        """
        names = list(dict.fromkeys(provides))
        if not names:
            return PLUGIN_CONTRACT
        try:
            contracts = [self.get(name) for name in names]
        except ContractError as exc:
            raise ContractError(f"plugin '{plugin}': {exc}", plugin=plugin, hint=exc.hint) from None
        if len(contracts) == 1:
            return contracts[0]
        kinds = {c.initialize_with for c in contracts}
        if len(kinds) > 1:
            detail = ", ".join(f"{c.name} ({c.initialize_with})" for c in contracts)
            raise ContractError(
                f"plugin '{plugin}' provides contracts that disagree on what initialize() "
                f"receives: {detail}",
                plugin=plugin,
                hint="split the plugin in two, one per contract",
            )
        required = tuple(dict.fromkeys(m for c in contracts for m in c.required))
        optional = tuple(
            dict.fromkeys(m for c in contracts for m in c.optional if m not in required)
        )
        managed = tuple(m for m in LIFECYCLE_METHODS if all(m in c.managed for c in contracts))
        return Contract(
            "+".join(names),
            "; ".join(c.description for c in contracts),
            required=required,
            optional=optional,
            initialize_with=contracts[0].initialize_with,
            managed=managed,
            host=", ".join(dict.fromkeys(c.host for c in contracts if c.host)),
            config_keys=tuple(dict.fromkeys(k for c in contracts for k in c.config_keys)),
        )
