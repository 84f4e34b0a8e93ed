"""The e-commerce workload: an online store's searches, carts, checkouts and customers.

``db`` is an asyncpg connection (one per client). Setup creates the
``ecommerce_*`` tables and loads the catalog once per data signature (sizes, seed
and schema version). Operations:

- ``product_search``: products whose name starts with a brand, under a price cap;
- ``browse_catalog``: one page of a category, with its product count;
- ``add_to_cart``: a popular product into a customer's cart (upserts cart and item);
- ``checkout``: one transaction turning a cart into an order: lock the stock rows in
  product order, refuse to oversell, decrement stock, write the order (shipped to
  the customer's default address), its items and a simulated payment, empty the cart;
- ``inventory_update``: restock the product lowest on stock;
- ``customer_register``: a new customer signs up: the customer and a default
  shipping address, in one transaction;
- ``customer_lookup``: a customer's account page: profile, default address, order
  count and amount spent, the five latest orders;
- ``customer_update``: a customer edits their profile (name, phone, marketing consent);
- ``address_update``: a customer moves: a new default address replaces the old one,
  which is kept for past orders (the customer row is locked first, so two changes of
  one customer's address run one after the other).

A checkout that cannot complete is a business outcome, not an error: out of stock
(rolled back; the sold-out items leave the cart), payment declined (rolled back;
``payment_decline_rate``) or an empty cart. ``get_metrics`` counts each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from tether.hosts.workload import AsyncConnection, Pool, Workload, settings_keys, skewed

from . import ecommerce_data as data

_PAGE = 24
_MAX_IN_CART = 10
_PAYMENT_METHODS = ("card", "card", "card", "paypal", "gift_card")


@dataclass(frozen=True, slots=True)
class Settings:
    """The plugin_config, as the manifest checks it (sizes and ranges there)."""

    catalog_size: int
    customer_count: int
    payment_decline_rate: float
    seed: int | None = None

    def signature(self) -> dict[str, object]:
        """What the loaded data depends on: a different signature means a new load."""
        return {
            "products": self.catalog_size,
            "customers": self.customer_count,
            "seed": self.seed,
            "schema": data.SCHEMA_VERSION,
        }


CONFIG_KEYS = settings_keys(Settings)


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


class EcommerceWorkload(Workload[Settings, _State]):
    """The ``ecommerce`` workload plugin (see the module docstring)."""

    NAME = "ecommerce"
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Online store: product search, catalog browsing, carts, checkout, restocking, "
        "customer accounts and addresses."
    )
    AUTHOR = "tether"
    OPERATION_WEIGHTS: ClassVar = {
        "product_search": 50,
        "add_to_cart": 20,
        "checkout": 15,
        "browse_catalog": 15,
        "inventory_update": 5,
        "customer_lookup": 5,
        "customer_update": 3,
        "customer_register": 2,
        "address_update": 2,
    }
    DATA = data.DATA
    SETTINGS = Settings

    def __init__(self) -> None:
        # Customers whose carts hold items: checkout takes one out of the pool.
        self._shoppers: Pool[int] = Pool()
        super().__init__(
            {
                "product_search": self._product_search,
                "add_to_cart": self._add_to_cart,
                "checkout": self._checkout,
                "browse_catalog": self._browse_catalog,
                "inventory_update": self._inventory_update,
                "customer_register": self._customer_register,
                "customer_lookup": self._customer_lookup,
                "customer_update": self._customer_update,
                "address_update": self._address_update,
            },
            read_state=self._read_state,
            counters=(
                "items_added_to_carts",
                "checkouts_completed",
                "checkouts_out_of_stock",
                "checkouts_payment_declined",
                "checkouts_empty_cart",
                "items_sold",
                "restocks",
                "units_restocked",
                "customers_registered",
                "customers_updated",
                "addresses_changed",
                "rows_returned",
            ),
        )
        self._revenue = Decimal(0)

    # ------------------------------------------------------------------ contract

    def get_metrics(self) -> dict[str, object]:
        return {**super().get_metrics(), "revenue": float(self._revenue)}

    async def setup(self, db: AsyncConnection) -> None:
        settings = self.settings

        async def fill() -> int:
            rng = random.Random(settings.seed)  # noqa: S311 - same seed, same rows
            return await data.load(
                db, rng, products=settings.catalog_size, customers=settings.customer_count
            )

        signature = settings.signature()
        self.counters.loaded(await data.DATA.load(db, signature, schema=data.SCHEMA, fill=fill))
        await self.operations.prepare(db)

    async def cleanup(self, db: AsyncConnection) -> None:
        await super().cleanup(db)
        self._shoppers = Pool()

    # ------------------------------------------------------------------ state

    async def _read_state(self, db: AsyncConnection) -> _State:
        row = await db.fetchrow(
            "SELECT (SELECT coalesce(max(product_id), 0) FROM ecommerce_products), "
            "(SELECT coalesce(max(customer_id), 0) FROM ecommerce_customers)"
        )
        if not row[0] or not row[1]:
            raise RuntimeError(
                f"workload '{self.NAME}': the ecommerce tables are empty; "
                "run setup() before operations"
            )
        shoppers = await db.fetch(
            "SELECT DISTINCT c.customer_id FROM ecommerce_carts c "
            "JOIN ecommerce_cart_items i ON i.cart_id = c.cart_id ORDER BY c.customer_id"
        )
        for shopper in shoppers:
            self._shoppers.add(shopper[0])
        return _State(products=row[0], customers=row[1])

    # ------------------------------------------------------------------ reads

    async def _product_search(self, db: AsyncConnection, _state: _State) -> None:
        rng = self.rng
        rows = await db.fetch(
            "SELECT p.product_id, p.name, p.price, i.stock FROM ecommerce_products p "
            "JOIN ecommerce_inventory i ON i.product_id = p.product_id "
            "WHERE lower(p.name) LIKE $1 AND p.price <= $2 ORDER BY p.price LIMIT $3",
            rng.choice(data.BRANDS).lower() + " %",
            Decimal(rng.choice((25, 50, 100, 250, 1000))),
            _PAGE,
        )
        self.counters["rows_returned"] += len(rows)

    async def _browse_catalog(self, db: AsyncConnection, _state: _State) -> None:
        rng = self.rng
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
        self.counters["rows_returned"] += len(rows)

    # ------------------------------------------------------------------ writes

    async def _add_to_cart(self, db: AsyncConnection, state: _State) -> None:
        rng = self.rng
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
                skewed(rng, state.products),
                rng.choice((1, 1, 1, 2, 3)),
                _MAX_IN_CART,
            )
        self._shoppers.add(customer_id)
        self.counters["items_added_to_carts"] += 1

    async def _checkout(self, db: AsyncConnection, state: _State) -> None:
        customer_id = self._shoppers.take(self.rng) or self.rng.randint(1, state.customers)
        try:
            async with db.transaction():
                outcome, units, total = await self._place_order(db, customer_id)
            self.counters["items_sold"] += units
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
        self.counters[outcome] += 1

    async def _place_order(self, db: AsyncConnection, customer_id: int) -> tuple[str, int, Decimal]:
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
            "INSERT INTO ecommerce_orders (customer_id, shipping_address_id, status, total, "
            "item_count) VALUES ($1, (SELECT address_id FROM ecommerce_addresses "
            "WHERE customer_id = $1 AND is_default), 'paid', $2, $3) RETURNING order_id",
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
        self, db: AsyncConnection, cart_id: int, products: list[int], quantities: list[int]
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

    async def _pay(self, db: AsyncConnection, cart_id: int, order_id: int, total: Decimal) -> None:
        settings = self.settings
        if self.rng.random() < settings.payment_decline_rate:
            raise _Abandoned("checkouts_payment_declined", cart_id)
        await db.execute(
            "INSERT INTO ecommerce_payments (order_id, amount, method, status) "
            "VALUES ($1, $2, $3, 'captured')",
            order_id,
            total,
            self.rng.choice(_PAYMENT_METHODS),
        )

    async def _inventory_update(self, db: AsyncConnection, state: _State) -> None:
        rng = self.rng
        units = rng.randint(50, 200)
        async with db.transaction():
            product_id = await db.fetchval(
                # `stock < 10` matches the partial index ecommerce_inventory_low_idx.
                "SELECT product_id FROM ecommerce_inventory WHERE stock < 10 "
                "ORDER BY stock, product_id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            if product_id is None:  # nothing runs low: top up a popular product
                product_id = skewed(rng, state.products)
            await db.execute(
                "UPDATE ecommerce_inventory SET stock = stock + $2, updated_at = now(), "
                "restocked_at = now() WHERE product_id = $1",
                product_id,
                units,
            )
        self.counters["restocks"] += 1
        self.counters["units_restocked"] += units

    # ------------------------------------------------------------------ customers

    async def _customer_register(self, db: AsyncConnection, _state: _State) -> None:
        rng = self.rng
        first, last = data.person(rng)
        line1, city, postal_code, country = data.address(rng)
        async with db.transaction():
            # The id comes first, so the e-mail address can hold it (unique, as the loaded ones).
            customer_id = await db.fetchval(
                "WITH new AS (SELECT nextval(pg_get_serial_sequence("
                "'ecommerce_customers', 'customer_id'))::integer AS id) "
                "INSERT INTO ecommerce_customers (customer_id, email, name, city, phone, "
                "marketing_opt_in) SELECT id, $1 || '.' || id || '@example.com', $2, $3, $4, $5 "
                "FROM new RETURNING customer_id",
                f"{first}.{last}".lower(),
                f"{first} {last}",
                city,
                data.phone(rng),
                rng.random() < 0.3,  # noqa: PLR2004 - a third of new customers opt in
            )
            await db.execute(
                "INSERT INTO ecommerce_addresses (customer_id, line1, city, postal_code, "
                "country, is_default) VALUES ($1, $2, $3, $4, $5, true)",
                customer_id,
                line1,
                city,
                postal_code,
                country,
            )
        self.counters["customers_registered"] += 1

    async def _customer_lookup(self, db: AsyncConnection, state: _State) -> None:
        customer_id = self.rng.randint(1, state.customers)
        profile = await db.fetchrow(
            "SELECT c.customer_id, c.email, c.name, c.phone, a.line1, a.city, a.postal_code, "
            "a.country, o.orders, o.spent FROM ecommerce_customers c "
            "LEFT JOIN ecommerce_addresses a ON a.customer_id = c.customer_id AND a.is_default "
            "CROSS JOIN LATERAL (SELECT count(*) AS orders, coalesce(sum(total), 0) AS spent "
            "FROM ecommerce_orders WHERE customer_id = c.customer_id) o "
            "WHERE c.customer_id = $1",
            customer_id,
        )
        orders = await db.fetch(
            "SELECT order_id, status, total, item_count, created_at FROM ecommerce_orders "
            "WHERE customer_id = $1 ORDER BY order_id DESC LIMIT 5",
            customer_id,
        )
        self.counters["rows_returned"] += (profile is not None) + len(orders)

    async def _customer_update(self, db: AsyncConnection, state: _State) -> None:
        rng = self.rng
        _, last = data.person(rng)  # a new last name, the first one kept
        updated = await db.execute(
            "UPDATE ecommerce_customers SET name = split_part(name, ' ', 1) || ' ' || $2, "
            "phone = $3, marketing_opt_in = $4, updated_at = now() WHERE customer_id = $1",
            rng.randint(1, state.customers),
            last,
            data.phone(rng),
            rng.random() < 0.5,  # noqa: PLR2004 - consent given or withdrawn
        )
        self.counters["customers_updated"] += updated == "UPDATE 1"

    async def _address_update(self, db: AsyncConnection, state: _State) -> None:
        rng = self.rng
        customer_id = rng.randint(1, state.customers)
        line1, city, postal_code, country = data.address(rng)
        async with db.transaction():
            # Lock the customer: the statements after it see a concurrent change committed.
            await db.execute(
                "SELECT 1 FROM ecommerce_customers WHERE customer_id = $1 FOR UPDATE", customer_id
            )
            await db.execute(
                "UPDATE ecommerce_addresses SET is_default = false "
                "WHERE customer_id = $1 AND is_default",
                customer_id,
            )
            await db.execute(
                "INSERT INTO ecommerce_addresses (customer_id, line1, city, postal_code, "
                "country, is_default) VALUES ($1, $2, $3, $4, $5, true)",
                customer_id,
                line1,
                city,
                postal_code,
                country,
            )
        self.counters["addresses_changed"] += 1
