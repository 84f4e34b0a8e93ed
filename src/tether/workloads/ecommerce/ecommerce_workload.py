"""The e-commerce workload: an online store's searches, carts and checkouts.

``db`` is an asyncpg connection (one per client). Setup creates the
``ecommerce_*`` tables and loads the catalog once per data signature (sizes and
seed). Operations:

- ``product_search``: products whose name starts with a brand, under a price cap;
- ``browse_catalog``: one page of a category, with its product count;
- ``add_to_cart``: a popular product into a customer's cart (upserts cart and item);
- ``checkout``: one transaction turning a cart into an order: lock the stock rows in
  product order, refuse to oversell, decrement stock, write the order, its items and
  a simulated payment, empty the cart;
- ``inventory_update``: restock the product lowest on stock.

A checkout that cannot complete is a business outcome, not an error: out of stock
(rolled back; the sold-out items leave the cart), payment declined (rolled back;
``payment_decline_rate``) or an empty cart. ``get_metrics`` counts each.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from tether.errors import ConfigError

from . import ecommerce_data as data
from .ecommerce_data import Connection

NAME = "ecommerce"
VERSION = "1.0.0"
DESCRIPTION = "Online store: product search, catalog browsing, carts, checkout, restocking."
CONFIG_KEYS = frozenset(
    {"operation_weights", "catalog_size", "customer_count", "payment_decline_rate", "seed"}
)
OPERATION_WEIGHTS = {
    "product_search": 50,
    "add_to_cart": 20,
    "checkout": 15,
    "browse_catalog": 15,
    "inventory_update": 5,
}
_PAGE = 24
_MAX_IN_CART = 10
_PAYMENT_METHODS = ("card", "card", "card", "paypal", "gift_card")
_instances = itertools.count()


@dataclass(frozen=True, slots=True)
class Settings:
    catalog_size: int
    customer_count: int
    payment_decline_rate: float
    seed: int | None

    def signature(self) -> dict[str, object]:
        """What the loaded data depends on: a different signature means a new load."""
        return {"products": self.catalog_size, "customers": self.customer_count, "seed": self.seed}


@dataclass(frozen=True, slots=True)
class _State:
    products: int
    customers: int


class _Abandoned(Exception):  # noqa: N818 - an outcome, not a failure
    """Raised inside the checkout transaction to roll it back."""

    def __init__(
        self, outcome: str, cart_id: int, *, sold_out: tuple[int, ...] = (), emptied: bool = False
    ) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.cart_id = cart_id
        self.sold_out = sold_out
        self.emptied = emptied  # nothing left in the cart once the sold-out items leave it


class _Shoppers:
    """Customers whose carts hold items: checkout picks one and takes it out of the pool."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._members: set[int] = set()

    def add(self, customer_id: int) -> None:
        if customer_id not in self._members:
            self._members.add(customer_id)
            self._ids.append(customer_id)

    def take(self, rng: random.Random) -> int | None:
        if not self._ids:
            return None
        index = rng.randrange(len(self._ids))
        self._ids[index], self._ids[-1] = self._ids[-1], self._ids[index]
        customer_id = self._ids.pop()
        self._members.discard(customer_id)
        return customer_id


def _fail(message: str) -> ConfigError:
    return ConfigError(
        f"invalid configuration for workload '{NAME}': {message}",
        plugin=NAME,
        hint="see the `config` section of the ecommerce workload's plugin.yaml",
    )


def _integer(config: Mapping[str, object], key: str, *, minimum: int) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(f"'{key}' must be an integer, got {value!r}")
    if value < minimum:
        raise _fail(f"'{key}' must be at least {minimum}, got {value}")
    return value


def _check_keys(config: Mapping[str, object]) -> None:
    for key in config:
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(key, sorted(CONFIG_KEYS), n=1)
            suggestion = f" (did you mean '{close[0]}'?)" if close else ""
            raise _fail(f"unknown key '{key}'{suggestion}")


def parse_settings(config: Mapping[str, object]) -> Settings:
    _check_keys(config)
    rate = config.get("payment_decline_rate")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise _fail(f"'payment_decline_rate' must be a number from 0 to 1, got {rate!r}")
    seed = config.get("seed")
    return Settings(
        catalog_size=_integer(config, "catalog_size", minimum=1),
        customer_count=_integer(config, "customer_count", minimum=1),
        payment_decline_rate=float(rate),
        seed=None if seed is None else _integer(config, "seed", minimum=-(2**63)),
    )


class EcommerceWorkload:
    """The ``ecommerce`` workload plugin (see the module docstring)."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self._rng = random.Random()  # noqa: S311 - benchmark data, not secrets
        self._state: _State | None = None
        self._state_lock = asyncio.Lock()
        self._shoppers = _Shoppers()
        self._operations: dict[str, Callable[[Connection, _State], Awaitable[None]]] = {
            "product_search": self._product_search,
            "add_to_cart": self._add_to_cart,
            "checkout": self._checkout,
            "browse_catalog": self._browse_catalog,
            "inventory_update": self._inventory_update,
        }
        self._counts = dict.fromkeys(self._operations, 0)
        self._metrics: dict[str, int] = dict.fromkeys(
            (
                "rows_loaded",
                "data_loads",
                "setups_reused",
                "items_added_to_carts",
                "checkouts_completed",
                "checkouts_out_of_stock",
                "checkouts_payment_declined",
                "checkouts_empty_cart",
                "items_sold",
                "restocks",
                "units_restocked",
                "rows_returned",
            ),
            0,
        )
        self._revenue = Decimal(0)

    # ------------------------------------------------------------------ contract

    def initialize(self, config: dict[str, object]) -> None:
        self.settings = parse_settings(config)
        seed = self.settings.seed
        instance = next(_instances)
        self._rng = random.Random(None if seed is None else f"{seed}:{instance}")  # noqa: S311

    def get_info(self) -> dict[str, object]:
        return {
            "name": NAME,
            "version": VERSION,
            "description": DESCRIPTION,
            "author": "tether",
            "tables": list(data.TABLES),
            "operation_types": self.get_operation_types(),
        }

    def get_operation_types(self) -> dict[str, int]:
        return dict(OPERATION_WEIGHTS)

    def get_metrics(self) -> dict[str, object]:
        # Flat counters, so the metrics of several worker processes add up.
        operations = {f"operations_{op}": n for op, n in self._counts.items()}
        return {**operations, **self._metrics, "revenue": float(self._revenue)}

    async def setup(self, db: Connection) -> None:
        settings = self._settings()
        signature = settings.signature()
        if await self._loaded_signature(db) == signature:
            self._metrics["setups_reused"] += 1
        else:
            await data.drop_tables(db)
            await db.execute(data.SCHEMA)
            rng = random.Random(settings.seed)  # noqa: S311 - same seed, same rows
            async with db.transaction():
                rows = await data.load(
                    db, rng, products=settings.catalog_size, customers=settings.customer_count
                )
                await db.execute(
                    "INSERT INTO ecommerce_meta (id, signature, rows_loaded) "
                    "VALUES (1, $1::jsonb, $2)",
                    json.dumps(signature),
                    rows,
                )
            await db.execute(f"ANALYZE {', '.join(data.TABLES)}")
            self._metrics["rows_loaded"] += rows
            self._metrics["data_loads"] += 1
        self._state = await self._read_state(db)

    async def cleanup(self, db: Connection) -> None:
        await data.drop_tables(db)
        self._state = None
        self._shoppers = _Shoppers()

    async def execute_operation(self, db: Connection, operation_type: str) -> None:
        operation = self._operations.get(operation_type)
        if operation is None:
            known = ", ".join(self._operations)
            raise ValueError(
                f"workload '{NAME}' has no operation '{operation_type}' (it has {known})"
            )
        await operation(db, await self._ready(db))
        self._counts[operation_type] += 1

    # ------------------------------------------------------------------ state

    def _settings(self) -> Settings:
        if self.settings is None:
            raise RuntimeError(f"workload '{NAME}' is not initialized: call initialize() first")
        return self.settings

    async def _loaded_signature(self, db: Connection) -> object:
        if not await db.fetchval("SELECT to_regclass('ecommerce_meta') IS NOT NULL"):
            return None
        text = await db.fetchval("SELECT signature::text FROM ecommerce_meta WHERE id = 1")
        return None if text is None else json.loads(text)

    async def _ready(self, db: Connection) -> _State:
        if self._state is None:
            async with self._state_lock:
                if self._state is None:
                    self._state = await self._read_state(db)
        return self._state

    async def _read_state(self, db: Connection) -> _State:
        row = await db.fetchrow(
            "SELECT (SELECT coalesce(max(product_id), 0) FROM ecommerce_products), "
            "(SELECT coalesce(max(customer_id), 0) FROM ecommerce_customers)"
        )
        if not row[0] or not row[1]:
            raise RuntimeError(
                f"workload '{NAME}': the ecommerce tables are empty; run setup() before operations"
            )
        shoppers = await db.fetch(
            "SELECT DISTINCT c.customer_id FROM ecommerce_carts c "
            "JOIN ecommerce_cart_items i ON i.cart_id = c.cart_id ORDER BY c.customer_id"
        )
        for shopper in shoppers:
            self._shoppers.add(shopper[0])
        return _State(products=row[0], customers=row[1])

    # ------------------------------------------------------------------ reads

    async def _product_search(self, db: Connection, _state: _State) -> None:
        rng = self._rng
        rows = await db.fetch(
            "SELECT p.product_id, p.name, p.price, i.stock FROM ecommerce_products p "
            "JOIN ecommerce_inventory i ON i.product_id = p.product_id "
            "WHERE lower(p.name) LIKE $1 AND p.price <= $2 ORDER BY p.price LIMIT $3",
            rng.choice(data.BRANDS).lower() + " %",
            Decimal(rng.choice((25, 50, 100, 250, 1000))),
            _PAGE,
        )
        self._metrics["rows_returned"] += len(rows)

    async def _browse_catalog(self, db: Connection, _state: _State) -> None:
        rng = self._rng
        category = rng.choice(data.CATEGORIES)
        total = await db.fetchval(
            "SELECT count(*) FROM ecommerce_products WHERE category = $1", category
        )
        page = min(int(rng.expovariate(0.7)), max(0, (total - 1) // _PAGE))
        rows = await db.fetch(
            "SELECT p.product_id, p.name, p.price, i.stock > 0 AS in_stock "
            "FROM ecommerce_products p JOIN ecommerce_inventory i ON i.product_id = p.product_id "
            "WHERE p.category = $1 ORDER BY p.price, p.product_id LIMIT $2 OFFSET $3",
            category,
            _PAGE,
            page * _PAGE,
        )
        self._metrics["rows_returned"] += len(rows)

    # ------------------------------------------------------------------ writes

    async def _add_to_cart(self, db: Connection, state: _State) -> None:
        rng = self._rng
        customer_id = rng.randint(1, state.customers)
        async with db.transaction():
            cart_id = await db.fetchval(
                "INSERT INTO ecommerce_carts (customer_id) VALUES ($1) "
                "ON CONFLICT (customer_id) DO UPDATE SET updated_at = now() RETURNING cart_id",
                customer_id,
            )
            await db.execute(
                "INSERT INTO ecommerce_cart_items (cart_id, product_id, quantity) "
                "VALUES ($1, $2, $3) ON CONFLICT (cart_id, product_id) DO UPDATE "
                "SET quantity = least(ecommerce_cart_items.quantity + excluded.quantity, $4)",
                cart_id,
                data.skewed(rng, state.products),
                rng.choice((1, 1, 1, 2, 3)),
                _MAX_IN_CART,
            )
        self._shoppers.add(customer_id)
        self._metrics["items_added_to_carts"] += 1

    async def _checkout(self, db: Connection, state: _State) -> None:
        customer_id = self._shoppers.take(self._rng) or self._rng.randint(1, state.customers)
        try:
            async with db.transaction():
                outcome, units, total = await self._place_order(db, customer_id)
            self._metrics["items_sold"] += units
            self._revenue += total
        except _Abandoned as abandoned:
            outcome = abandoned.outcome
            if abandoned.sold_out:  # the store takes sold-out items out of the cart
                await db.execute(
                    "DELETE FROM ecommerce_cart_items "
                    "WHERE cart_id = $1 AND product_id = ANY($2::integer[])",
                    abandoned.cart_id,
                    list(abandoned.sold_out),
                )
            if not abandoned.emptied:
                self._shoppers.add(customer_id)  # the customer may try again
        self._metrics[outcome] += 1

    async def _place_order(self, db: Connection, customer_id: int) -> tuple[str, int, Decimal]:
        """The checkout transaction's body; raises :class:`_Abandoned` to roll back."""
        cart_id = await db.fetchval(
            "SELECT cart_id FROM ecommerce_carts WHERE customer_id = $1 FOR UPDATE", customer_id
        )
        items = await db.fetch(
            "SELECT c.product_id, c.quantity, p.price FROM ecommerce_cart_items c "
            "JOIN ecommerce_products p ON p.product_id = c.product_id "
            "WHERE c.cart_id = $1 ORDER BY c.product_id",
            cart_id,
        )
        if not items:
            return "checkouts_empty_cart", 0, Decimal(0)
        products = [item["product_id"] for item in items]
        quantities = [item["quantity"] for item in items]
        await self._take_stock(db, cart_id, products, quantities)
        total = sum((item["price"] * item["quantity"] for item in items), Decimal(0))
        order_id = await db.fetchval(
            "INSERT INTO ecommerce_orders (customer_id, status, total, item_count) "
            "VALUES ($1, 'paid', $2, $3) RETURNING order_id",
            customer_id,
            total,
            sum(quantities),
        )
        await db.execute(
            "INSERT INTO ecommerce_order_items (order_id, product_id, quantity, unit_price) "
            "SELECT $1, u.product_id, u.quantity, u.unit_price "
            "FROM unnest($2::integer[], $3::integer[], $4::numeric[]) "
            "AS u(product_id, quantity, unit_price)",
            order_id,
            products,
            quantities,
            [item["price"] for item in items],
        )
        await self._pay(db, cart_id, order_id, total)
        await db.execute("DELETE FROM ecommerce_cart_items WHERE cart_id = $1", cart_id)
        await db.execute(
            "UPDATE ecommerce_carts SET updated_at = now() WHERE cart_id = $1", cart_id
        )
        return "checkouts_completed", sum(quantities), total

    async def _take_stock(
        self, db: Connection, cart_id: int, products: list[int], quantities: list[int]
    ) -> None:
        # Lock the stock rows in product order, so concurrent checkouts cannot deadlock.
        stock = await db.fetch(
            "SELECT product_id, stock FROM ecommerce_inventory "
            "WHERE product_id = ANY($1::integer[]) ORDER BY product_id FOR UPDATE",
            products,
        )
        available = {row["product_id"]: row["stock"] for row in stock}
        sold_out = tuple(
            p for p, q in zip(products, quantities, strict=True) if available.get(p, 0) < q
        )
        if sold_out:
            emptied = len(sold_out) == len(products)
            raise _Abandoned("checkouts_out_of_stock", cart_id, sold_out=sold_out, emptied=emptied)
        await db.execute(
            "UPDATE ecommerce_inventory i SET stock = i.stock - u.quantity, updated_at = now() "
            "FROM unnest($1::integer[], $2::integer[]) AS u(product_id, quantity) "
            "WHERE i.product_id = u.product_id",
            products,
            quantities,
        )

    async def _pay(self, db: Connection, cart_id: int, order_id: int, total: Decimal) -> None:
        settings = self._settings()
        if self._rng.random() < settings.payment_decline_rate:
            raise _Abandoned("checkouts_payment_declined", cart_id)
        await db.execute(
            "INSERT INTO ecommerce_payments (order_id, amount, method, status) "
            "VALUES ($1, $2, $3, 'captured')",
            order_id,
            total,
            self._rng.choice(_PAYMENT_METHODS),
        )

    async def _inventory_update(self, db: Connection, state: _State) -> None:
        rng = self._rng
        units = rng.randint(50, 200)
        async with db.transaction():
            product_id = await db.fetchval(
                # `stock < 10` matches the partial index ecommerce_inventory_low_idx.
                "SELECT product_id FROM ecommerce_inventory WHERE stock < 10 "
                "ORDER BY stock, product_id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            if product_id is None:  # nothing runs low: top up a popular product
                product_id = data.skewed(rng, state.products)
            await db.execute(
                "UPDATE ecommerce_inventory SET stock = stock + $2, updated_at = now(), "
                "restocked_at = now() WHERE product_id = $1",
                product_id,
                units,
            )
        self._metrics["restocks"] += 1
        self._metrics["units_restocked"] += units
