"""A small Optimove world for day-by-day scenarios: customers who change and come and go,
transactions every day, refunds of earlier transactions days later. Truth is read back from the
warehouse with its own SQL (not the code under test)."""

from __future__ import annotations

import datetime as dt
import random

import duckdb

from delivery_platform_tests.warehouses import table_warehouse


def _customer(cid: str, updated: str, rng: random.Random) -> dict:
    return {
        "customer_id": cid,
        "email": f"{cid.lower()}@example.com",
        "first_name": "Ana",
        "last_name": "Li",
        "country": rng.choice(["gb", "US", "de"]),
        "registration_date": "2025-01-02",
        "birth_date": rng.choice(["1980-05-06", "1900-01-01"]),
        "opt_in_email": rng.random() < 0.5,
        "last_updated": updated,
    }


def create(path, first: dt.date, customers: int = 40, seed: int = 13):
    rng = random.Random(seed)
    before = f"{first - dt.timedelta(days=3)} 10:00:00"
    return table_warehouse(
        path,
        {
            "optimove_customers": [_customer(f"C{i:04d}", before, rng) for i in range(customers)],
            "optimove_transactions": [],
        },
    )


def change_day(con: duckdb.DuckDBPyConnection, day: dt.date, index: int, rng: random.Random) -> None:
    """Everything that happens during `day` (all changes carry a LastUpdated inside it)."""
    at = lambda h, m=0: f"{day} {h:02d}:{m:02d}:00"  # noqa: E731
    customers = [
        r[0] for r in con.execute("SELECT customer_id FROM optimove_customers ORDER BY 1").fetchall()
    ]
    for n in range(5):  # new orders
        con.execute(
            "INSERT INTO optimove_transactions VALUES (?, ?, ?, ?, 'GBP', 'P1', 'completed', ?)",
            [
                f"T{index:03d}{n}",
                rng.choice(customers),
                at(8 + n),
                round(rng.uniform(5, 200), 2),
                at(8 + n, 5),
            ],
        )
    earlier = [
        r[0]
        for r in con.execute(
            "SELECT transaction_id FROM optimove_transactions WHERE status = 'completed' "
            "AND transaction_ts < ? ORDER BY 1",
            [f"{day - dt.timedelta(days=2)}"],
        ).fetchall()
    ]
    for tid in rng.sample(earlier, min(2, len(earlier))):  # refunds of orders from days before
        con.execute(
            "UPDATE optimove_transactions SET status = 'refunded', last_updated = ? WHERE transaction_id = ?",
            [at(15, rng.randrange(60)), tid],
        )
    for cid in rng.sample(customers, 2):  # customers change
        con.execute(
            "UPDATE optimove_customers SET email = ?, country = ?, last_updated = ? WHERE customer_id = ?",
            [f"{cid.lower()}.{index}@example.com", rng.choice(["FR", "us", "ES"]), at(12), cid],
        )
    new = _customer(f"N{index:04d}", at(18), rng)  # a new customer
    con.execute(f"INSERT INTO optimove_customers VALUES ({', '.join('?' for _ in new)})", list(new.values()))
    if index % 7 == 6:  # a customer erased from the CRM: gone from the next full file
        con.execute("DELETE FROM optimove_customers WHERE customer_id = ?", [rng.choice(customers)])


def truth(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    """What Optimove must hold: table -> key -> the columns compared."""
    fmt = "strftime(last_updated, '%Y-%m-%d %H:%M:%S')"
    customers = con.execute(f"SELECT customer_id, email, {fmt} FROM optimove_customers").fetchall()
    transactions = con.execute(f"SELECT transaction_id, status, {fmt} FROM optimove_transactions").fetchall()
    return {
        "customers": {k: (e, u) for k, e, u in customers},
        "transactions": {k: (s, u) for k, s, u in transactions},
    }
