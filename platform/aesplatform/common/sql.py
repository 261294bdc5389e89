"""Bulk writes the ORM makes slow, written once: the statements are built from the model's metadata (table, column
names, quoted by the connection), so a renamed field or table follows. (annotation/hotpath.py is another matter:
its per-request statements are built once per process because compiling the ORM's querysets was most of the web
process's CPU on the annotation cycle; it stays as measured there.)

- `rows_update_by_pk`: one parameterised UPDATE per row through executemany. bulk_update builds one CASE
  expression per field over the whole batch, which costs more than everything else an import does per chunk.
- `rows_insert`: PostgreSQL's COPY FROM STDIN (a dataset version inserts 50 000+ items at once; bulk_create builds
  and sends every row as SQL text), an executemany INSERT on other databases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

from django.db import connection
from django.db.models import Model

INSERT_BATCH = 5000


def _quoted(model: type[Model], fields: Sequence[str]) -> tuple[str, list[str]]:
    """(quoted table, quoted columns) of the model's fields, named as on the model (`image`, not `image_id`)."""
    meta, quote = model._meta, connection.ops.quote_name
    return quote(meta.db_table), [quote(meta.get_field(name).column) for name in fields]


def rows_update_by_pk(model: type[Model], fields: Sequence[str], rows: Iterable[tuple]) -> None:
    """UPDATE each row's `fields` by primary key; each row is (*values in `fields` order, pk)."""
    rows = list(rows)
    if not rows:
        return
    table, columns = _quoted(model, fields)
    pk = connection.ops.quote_name(model._meta.pk.column)
    sql = f"UPDATE {table} SET {', '.join(f'{c} = %s' for c in columns)} WHERE {pk} = %s"
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def rows_insert(model: type[Model], fields: Sequence[str], rows: Iterable[tuple]) -> None:
    """INSERT the rows (values in `fields` order), streamed: nothing is held beyond one batch."""
    table, columns = _quoted(model, fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        iterator = iter(rows)
        while batch := list(islice(iterator, INSERT_BATCH)):
            cursor.executemany(sql, batch)
