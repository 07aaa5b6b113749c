"""Batch statements whose text does not grow with the batch, on PostgreSQL.

psycopg re-parses a statement's placeholders in Python on every call once it is longer
than its cache allows: a 1,000-row VALUES list or IN list (thousands of placeholders)
costs tens to hundreds of milliseconds before PostgreSQL sees it. One array parameter
per column (`unnest`, `= ANY`) keeps the text short and the same for any batch size.
SQLite keeps the plain forms, where parameters cost nothing to parse.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, ColumnElement, Connection, Table, any_, bindparam
from sqlalchemy.dialects import postgresql

_PG = postgresql.dialect()


def one_of(conn_or_dialect: Connection | str, column: Any, values: Sequence[Any]
           ) -> ColumnElement[bool]:
    """`column IN values`: one array parameter on PostgreSQL."""
    name = conn_or_dialect if isinstance(conn_or_dialect, str) else conn_or_dialect.dialect.name
    if name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))


def insert_unnest(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
                  suffix: str = "") -> list[Any]:
    """PostgreSQL: INSERT … SELECT * FROM unnest(one array per column) `suffix`; the
    rows `suffix`'s RETURNING gives, if any."""
    names = list(rows[0])
    casts = [table.c[n].type.compile(dialect=_PG) for n in names]
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest("
           + ", ".join(f"%({n})s::{c}[]" for n, c in zip(names, casts, strict=True))
           + f") {suffix}")
    params = {n: [json.dumps(r[n]) if isinstance(table.c[n].type, JSON) else r[n]
                  for r in rows] for n in names}
    result = conn.exec_driver_sql(sql, params)
    return list(result) if result.returns_rows else []
