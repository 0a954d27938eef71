"""Build "Quackers & Co.", the bundled sample shop database.

Quackers & Co. is a small Bristol shop that sells rubber ducks online. The database holds the
web shop's catalogue and its 2024-2025 trading, shaped so that questions have interesting answers:
a few best-sellers, Holiday ducks that sell only in November and December, a Boxing Day sale, a
Talk Like a Pirate Day sale, bigger and smaller countries, and three limited-edition ducks launched
for Christmas 2025. The documents in `docs/` describe the same shop (names, collections, shipping
methods, prices, policies).

Tables: `ducks` (the catalogue), `customers`, `orders`, `order_items` and `reviews`. Every table and
column carries a `COMMENT`, which the agent shows the model together with the schema.

The output is fully determined by `SEED` and this file (a seeded `random.Random`; no clock, no
network): bump `SAMPLE_VERSION` whenever a change alters what `build` writes.

The catalogue of ducks is `catalogue.py`, the customers `customers.py`. Run as a script:
`python -m ollagraph.data.build_sample OUT.duckdb`.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from ollagraph.data.catalogue import FIRST_DAY, LAST_DAY, SOLD_OUT, Duck, catalogue
from ollagraph.data.customers import Customer, generate_customers, region

SAMPLE_VERSION = "1"
"""Version of the builder's output; part of the cached file name, so bump it on any change."""

SEED = 20160409
N_ORDERS = 3000
FIRST_ORDER_ID = 10001
LIMITED_RUN = 200
LIMITED_MAX_PER_ORDER = 2
CENT = Decimal("0.01")

# --------------------------------------------------------------------------------------------
# Calendar, shipping and prices (the rules the documents describe)
# --------------------------------------------------------------------------------------------

_BANK_HOLIDAYS = frozenset(
    date.fromisoformat(day)
    for day in (
        "2024-01-01",
        "2024-03-29",
        "2024-04-01",
        "2024-05-06",
        "2024-05-27",
        "2024-08-26",
        "2024-12-25",
        "2024-12-26",
        "2025-01-01",
        "2025-04-18",
        "2025-04-21",
        "2025-05-05",
        "2025-05-26",
        "2025-08-25",
        "2025-12-25",
        "2025-12-26",
        "2026-01-01",
    )
)
PIRATE_DAY = (9, 19)
"""International Talk Like a Pirate Day: Pirates ducks are 20% off."""

# (region, method): (fee, free-shipping threshold or None, fewest and most working days)
SHIPPING: dict[tuple[str, str], tuple[Decimal, Decimal | None, int, int]] = {
    ("UK", "Standard"): (Decimal("3.50"), Decimal("40.00"), 2, 4),
    ("UK", "Express"): (Decimal("6.95"), None, 1, 2),
    ("UK", "Next Day"): (Decimal("9.95"), None, 1, 1),
    ("UK", "Collect"): (Decimal("0.00"), None, 1, 1),
    ("Europe", "Standard"): (Decimal("7.50"), Decimal("75.00"), 5, 8),
    ("Europe", "Express"): (Decimal("14.50"), None, 2, 4),
    ("Rest of world", "Standard"): (Decimal("12.00"), Decimal("120.00"), 7, 14),
    ("Rest of world", "Express"): (Decimal("24.00"), None, 3, 6),
}
_METHOD_WEIGHTS: dict[str, dict[str, float]] = {
    "UK": {"Standard": 60, "Express": 20, "Next Day": 12, "Collect": 8},
    "Europe": {"Standard": 75, "Express": 25},
    "Rest of world": {"Standard": 70, "Express": 30},
}


def is_working_day(day: date) -> bool:
    """Return whether the warehouse works on `day` (Monday to Friday, not a bank holiday)."""
    return day.weekday() < 5 and day not in _BANK_HOLIDAYS


def add_working_days(day: date, count: int) -> date:
    """Return the working day `count` working days after `day`."""
    while count > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            count -= 1
    return day


def dispatch_day(ordered_at: datetime) -> date:
    """Return the day an order is dispatched: the same day if placed by 14:00 on a working day."""
    day = ordered_at.date()
    if is_working_day(day) and ordered_at.time() < time(14):
        return day
    return add_working_days(day, 1)


def unit_price(duck: Duck, day: date) -> Decimal:
    """Return what one `duck` cost on `day`, after that day's sale, if any.

    Args:
        duck: The duck sold.
        day: The order date.
    """
    factor = Decimal(1)
    if duck.collection == "Holiday" and not duck.limited and day.month == 12 and day.day >= 26:
        factor = Decimal("0.75")  # Boxing Day sale
    elif duck.collection == "Pirates" and (day.month, day.day) == PIRATE_DAY:
        factor = Decimal("0.80")
    return (duck.price * factor).quantize(CENT, rounding=ROUND_HALF_UP)


def on_sale(duck: Duck, day: date) -> bool:
    """Return whether `duck` can be bought on `day` (launched; Holiday ducks only Nov-Dec)."""
    if duck.launched > day:
        return False
    return duck.collection != "Holiday" or day.month >= 11


# --------------------------------------------------------------------------------------------
# Orders and their items
# --------------------------------------------------------------------------------------------


@dataclass
class Order:
    """A web shop order with its items as (duck_id, quantity, unit_price)."""

    order_id: int
    customer_id: int
    ordered_at: datetime
    status: str
    shipping_method: str
    shipping_fee: Decimal
    total: Decimal
    delivered_on: date | None
    items: list[tuple[int, int, Decimal]]


def _day_weight(day: date) -> float:
    growth = 1 + 0.35 * (day - FIRST_DAY).days / 730
    month = {1: 0.8, 2: 0.95, 7: 1.1, 8: 1.1, 11: 1.8}.get(day.month, 1.0)
    if day.month == 12:
        month = 2.8 if day.day <= 20 else 1.5 if day.day <= 24 else 0.4 if day.day == 25 else 1.6
    if (day.month, day.day) == PIRATE_DAY:
        month = 3.0
    weekend = 1.15 if day.weekday() == 6 else 1.0
    return growth * month * weekend


_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 6, 7, 8, 10, 11, 10, 7, 3)


def _order_times(rng: random.Random) -> list[datetime]:
    days = [FIRST_DAY + timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
    picked = rng.choices(days, [_day_weight(day) for day in days], k=N_ORDERS)
    hours = range(24)
    stamps = [
        datetime.combine(day, time(rng.choices(hours, _HOUR_WEIGHTS)[0], rng.randrange(60)))
        + timedelta(seconds=rng.randrange(60))
        for day in picked
    ]
    return sorted(stamps)


def _duck_weight(duck: Duck, day: date) -> float:
    weight = duck.popularity
    if duck.collection == "Holiday":
        weight *= 3.5 if duck.limited else 3
    elif duck.collection == "Pirates" and (day.month, day.day) == PIRATE_DAY:
        weight *= 8
    elif duck.collection == "Sports" and day.month in (6, 7, 8):
        weight *= 1.4
    elif duck.collection == "Bath Spa" and day.month in (1, 2):
        weight *= 1.3
    return weight


def _pick_items(
    rng: random.Random, available: Sequence[Duck], day: date, sold: dict[int, int]
) -> list[tuple[int, int, Decimal]]:
    available = [d for d in available if not d.limited or sold[d.duck_id] < LIMITED_RUN]
    count = min(rng.choices((1, 2, 3, 4, 5, 6), (35, 28, 18, 10, 6, 3))[0], len(available))
    weights = [_duck_weight(duck, day) for duck in available]
    chosen: list[Duck] = []
    while len(chosen) < count:
        duck = rng.choices(available, weights)[0]
        if duck not in chosen:
            chosen.append(duck)
    items = []
    for duck in sorted(chosen, key=lambda d: d.duck_id):
        quantity = 1 if duck.size_cm >= 20 else rng.choices((1, 2, 3, 4, 6), (70, 18, 7, 3, 2))[0]
        if duck.limited:
            quantity = min(quantity, LIMITED_MAX_PER_ORDER, LIMITED_RUN - sold[duck.duck_id])
            sold[duck.duck_id] += quantity
        items.append((duck.duck_id, quantity, unit_price(duck, day)))
    return items


def _status_and_delivery(
    rng: random.Random, ordered_at: datetime, where: str, method: str
) -> tuple[str, date | None]:
    if rng.random() < 0.03:
        return "cancelled", None
    _, _, fewest, most = SHIPPING[where, method]
    delivered = add_working_days(dispatch_day(ordered_at), rng.randint(fewest, most))
    if method == "Collect":  # ready the next working day, collected within a few days
        delivered = add_working_days(delivered, rng.choices((0, 1, 2, 5), (50, 25, 15, 10))[0])
    if delivered > LAST_DAY:
        return "shipped", None
    return ("returned" if rng.random() < 0.04 else "delivered"), delivered


def _orders(rng: random.Random, ducks: list[Duck], customers: list[Customer]) -> list[Order]:
    signups = [c.signed_up for c in customers]
    cumulative: list[float] = []
    running = 0.0
    for customer in customers:
        running += customer.appetite
        cumulative.append(running)
    available_on: dict[date, list[Duck]] = {}
    sold = {duck.duck_id: 0 for duck in ducks if duck.limited}
    orders: list[Order] = []
    for order_id, ordered_at in enumerate(_order_times(rng), start=FIRST_ORDER_ID):
        day = ordered_at.date()
        eligible = bisect.bisect_right(signups, day)  # customers signed up by that day
        index = bisect.bisect_left(cumulative, rng.random() * cumulative[eligible - 1])
        customer = customers[min(index, eligible - 1)]
        if day not in available_on:
            available_on[day] = [duck for duck in ducks if on_sale(duck, day)]
        items = _pick_items(rng, available_on[day], day, sold)
        where = region(customer.country)
        methods = _METHOD_WEIGHTS[where]
        method = rng.choices(list(methods), list(methods.values()))[0]
        status, delivered_on = _status_and_delivery(rng, ordered_at, where, method)
        total = sum((q * price for _, q, price in items), Decimal("0.00"))
        fee, free_from, _, _ = SHIPPING[where, method]
        if free_from is not None and total >= free_from:
            fee = Decimal("0.00")
        orders.append(
            Order(
                order_id, customer.customer_id, ordered_at, status, method, fee, total,
                delivered_on, items,
            )
        )  # fmt: skip
    return orders


def _stock(rng: random.Random, ducks: list[Duck], orders: list[Order]) -> dict[int, int]:
    sold = dict.fromkeys((duck.duck_id for duck in ducks), 0)
    for order in orders:
        if order.status != "cancelled":
            for duck_id, quantity, _ in order.items:
                sold[duck_id] += quantity
    stock = {}
    for duck in ducks:
        if duck.limited:
            stock[duck.duck_id] = LIMITED_RUN - sold[duck.duck_id]
        elif duck.name in SOLD_OUT:
            stock[duck.duck_id] = 0
        else:
            stock[duck.duck_id] = rng.randrange(12, 400)
    return stock


# --------------------------------------------------------------------------------------------
# Reviews
# --------------------------------------------------------------------------------------------

_TITLES: dict[int, tuple[str, ...]] = {
    5: (
        "Absolutely quackers about it!",
        "Best duck ever",
        "Bath time is fun again",
        "Perfect gift",
        "My kids adore it",
        "Pure joy in duck form",
        "Even cuter in real life",
        "Ten out of ten, would quack again",
    ),
    4: (
        "Lovely duck",
        "Very cute, well made",
        "Great value",
        "Happy with it",
        "Nice little gift",
        "Good quality, fast delivery",
    ),
    3: (
        "It's okay",
        "Cute but smaller than expected",
        "Paint a little scuffed",
        "Fine, nothing special",
        "Decent but pricey",
    ),
    2: (
        "Disappointed",
        "Not as pictured",
        "Squeak stopped working",
        "Colours faded quickly",
    ),
    1: (
        "Arrived damaged",
        "Would not buy again",
        "Fell apart after a week",
        "Not what I expected",
    ),
}


@dataclass(frozen=True)
class Review:
    """A customer's star rating of a duck they received."""

    review_id: int
    duck_id: int
    customer_id: int
    rating: int
    reviewed_at: datetime
    title: str


def _reviews(rng: random.Random, ducks: list[Duck], orders: list[Order]) -> list[Review]:
    quality = {duck.duck_id: duck.quality for duck in ducks}
    end = datetime.combine(LAST_DAY, time(23, 59, 59))
    seen: set[tuple[int, int]] = set()
    drafts: list[tuple[datetime, int, int, int, str]] = []
    for order in orders:
        if order.delivered_on is None:
            continue
        returned = order.status == "returned"
        if rng.random() >= (0.45 if returned else 0.3):
            continue
        duck_id = rng.choice(order.items)[0]
        at = datetime.combine(order.delivered_on, time(rng.randrange(7, 23), rng.randrange(60)))
        at += timedelta(days=rng.randint(1, 21))
        if at > end or (order.customer_id, duck_id) in seen:
            continue
        seen.add((order.customer_id, duck_id))
        mean = quality[duck_id] - (2.2 if returned else 0)
        rating = max(1, min(5, round(rng.gauss(mean, 0.8))))
        drafts.append((at, duck_id, order.customer_id, rating, rng.choice(_TITLES[rating])))
    drafts.sort()
    return [Review(i, *draft[1:4], draft[0], draft[4]) for i, draft in enumerate(drafts, start=1)]


# --------------------------------------------------------------------------------------------
# Schema and writing
# --------------------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE ducks (
    duck_id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    collection VARCHAR NOT NULL,
    color VARCHAR NOT NULL,
    material VARCHAR NOT NULL,
    squeaks BOOLEAN NOT NULL,
    size_cm DECIMAL(4, 1) NOT NULL,
    price DECIMAL(6, 2) NOT NULL,
    stock INTEGER NOT NULL,
    launched DATE NOT NULL
);
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    email VARCHAR NOT NULL UNIQUE,
    country VARCHAR NOT NULL,
    city VARCHAR NOT NULL,
    signed_up DATE NOT NULL
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    ordered_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ('shipped', 'delivered', 'returned', 'cancelled')),
    shipping_method VARCHAR NOT NULL,
    shipping_fee DECIMAL(6, 2) NOT NULL,
    total DECIMAL(8, 2) NOT NULL,
    delivered_on DATE
);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders (order_id),
    duck_id INTEGER NOT NULL REFERENCES ducks (duck_id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price DECIMAL(6, 2) NOT NULL,
    PRIMARY KEY (order_id, duck_id)
);
CREATE TABLE reviews (
    review_id INTEGER PRIMARY KEY,
    duck_id INTEGER NOT NULL REFERENCES ducks (duck_id),
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    reviewed_at TIMESTAMP NOT NULL,
    title VARCHAR NOT NULL
);
"""

COMMENTS: dict[str, str] = {
    "ducks": "Quackers & Co. product catalogue: one row per rubber duck sold in the web shop.",
    "ducks.duck_id": "Product id.",
    "ducks.name": "Unique product name, e.g. 'Captain Quack'.",
    "ducks.collection": "Product line: Classic, Pirates, Space, Holiday, Bath Spa, Sports, "
    "Fairy Tale or Working Ducks. Holiday ducks are sold only in November and December.",
    "ducks.color": "Main colour(s) of the duck.",
    "ducks.material": "'recycled vinyl', 'natural rubber' or 'silicone'.",
    "ducks.squeaks": "True if the duck has a squeaker (and so an air hole); false if sealed.",
    "ducks.size_cm": "Height in centimetres.",
    "ducks.price": "Current list price in GBP (£), including VAT.",
    "ducks.stock": "Units in the warehouse at the end of 2025-12-31.",
    "ducks.launched": "Date the duck was first sold.",
    "customers": "Web shop customer accounts.",
    "customers.customer_id": "Customer id (ids grow with the sign-up date).",
    "customers.name": "Full name.",
    "customers.email": "Login e-mail address (unique).",
    "customers.country": "Country of the delivery address, in English, e.g. 'United Kingdom'.",
    "customers.city": "City of the delivery address.",
    "customers.signed_up": "Date the account was created (before 2024: moved from the old shop).",
    "orders": "Web shop orders placed from 2024-01-01 to 2025-12-31, one row per order.",
    "orders.order_id": "Order number.",
    "orders.customer_id": "The customer who placed the order (customers.customer_id).",
    "orders.ordered_at": "When the order was placed (UK local time).",
    "orders.status": "'delivered'; 'shipped' (on its way, not delivered by 2025-12-31); "
    "'returned' (delivered, then sent back and refunded); 'cancelled' (never sent).",
    "orders.shipping_method": "'Standard', 'Express', 'Next Day' (UK only) or "
    "'Collect' (pick-up at the Bristol shop, UK only).",
    "orders.shipping_fee": "Shipping charged in GBP (£); 0.00 when free.",
    "orders.total": "Value of the goods in GBP (£): the sum of quantity * unit_price over "
    "the order's items, excluding shipping.",
    "orders.delivered_on": "Date delivered or collected; NULL if not (yet) delivered.",
    "order_items": "Lines of each order: which ducks, how many, at what price.",
    "order_items.order_id": "The order (orders.order_id).",
    "order_items.duck_id": "The duck bought (ducks.duck_id).",
    "order_items.quantity": "Number of units.",
    "order_items.unit_price": "Price paid per unit in GBP (£), after any sale discount.",
    "reviews": "Star ratings that customers left for ducks they received.",
    "reviews.review_id": "Review id.",
    "reviews.duck_id": "The duck reviewed (ducks.duck_id).",
    "reviews.customer_id": "The reviewer (customers.customer_id).",
    "reviews.rating": "Stars, 1 (worst) to 5 (best).",
    "reviews.reviewed_at": "When the review was posted.",
    "reviews.title": "Headline of the review.",
}


def _rows(
    ducks: list[Duck],
    stock: dict[int, int],
    customers: list[Customer],
    orders: list[Order],
    reviews: list[Review],
) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "ducks": [
            (
                d.duck_id,
                d.name,
                d.collection,
                d.color,
                d.material,
                d.squeaks,
                d.size_cm,
                d.price,
                stock[d.duck_id],
                d.launched,
            )
            for d in ducks
        ],
        "customers": [
            (c.customer_id, c.name, c.email, c.country, c.city, c.signed_up) for c in customers
        ],
        "orders": [
            (
                o.order_id,
                o.customer_id,
                o.ordered_at,
                o.status,
                o.shipping_method,
                o.shipping_fee,
                o.total,
                o.delivered_on,
            )
            for o in orders
        ],
        "order_items": [(o.order_id, *item) for o in orders for item in o.items],
        "reviews": [
            (r.review_id, r.duck_id, r.customer_id, r.rating, r.reviewed_at, r.title)
            for r in reviews
        ],
    }


def generate() -> dict[str, list[tuple[Any, ...]]]:
    """Return every table's rows, in column order, as plain Python values.

    The same call always returns the same rows: everything comes from one `random.Random(SEED)`.
    """
    rng = random.Random(SEED)
    ducks = catalogue()
    customers = generate_customers(rng)
    orders = _orders(rng, ducks, customers)
    stock = _stock(rng, ducks, orders)
    reviews = _reviews(rng, ducks, orders)
    return _rows(ducks, stock, customers, orders, reviews)


def _write(path: Path, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    import duckdb
    import pyarrow as pa

    conn = duckdb.connect(str(path))
    try:
        conn.execute(SCHEMA)
        for table, rows in tables.items():  # parents first: ducks, customers, orders, ...
            names = [row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()]
            columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
            arrow = pa.table(
                {name: pa.array(values) for name, values in zip(names, columns, strict=True)}
            )
            conn.register("_rows", arrow)
            conn.execute(f"INSERT INTO {table} SELECT * FROM _rows")
            conn.unregister("_rows")
        for target, text in COMMENTS.items():
            kind = "COLUMN" if "." in target else "TABLE"
            literal = text.replace("'", "''")
            conn.execute(f"COMMENT ON {kind} {target} IS '{literal}'")
        conn.execute("CHECKPOINT")
    finally:
        conn.close()


def build(path: Path) -> None:
    """Write the sample shop database to `path`, replacing any file there atomically.

    The database is built in a temporary folder beside `path` and moved into place with
    `os.replace`, so a reader never sees a half-written file and two processes building at once
    are both safe (the last one wins, with identical content).

    Args:
        path: Where to write the DuckDB file; its folder must exist.
    """
    path = Path(path)
    tables = generate()
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = workdir / path.name
        _write(staged, tables)
        os.replace(staged, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the sample database from the command line.

    Args:
        argv: Command-line arguments (without the program name); None reads `sys.argv`.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ollagraph.data.build_sample",
        description="Build the Quackers & Co. sample shop database (DuckDB).",
    )
    parser.add_argument("out", type=Path, help="database file to write, e.g. shop.duckdb")
    args = parser.parse_args(argv)
    out: Path = args.out
    if not out.parent.is_dir():
        parser.error(f"folder {out.parent} does not exist")
    build(out)
    print(f"Wrote {out} (sample version {SAMPLE_VERSION})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
