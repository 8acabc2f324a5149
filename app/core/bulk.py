"""Bulk row writes for the paths that move many rows at once (imports, bulk audit rows).

`insert_rows` is the one way such paths insert: on PostgreSQL it streams the rows with COPY on the
session's own connection (same transaction, so a rollback still undoes them), elsewhere it is a
plain executemany. Rows are dicts with the same keys; keys that are not table columns are refused.
"""

from sqlalchemy import JSON, insert


def insert_rows(session, table, rows):
    """Insert `rows` (list of dicts, same keys) into `table` (a Table or a mapped class); returns the count."""
    if not rows:
        return 0
    table = getattr(table, "__table__", table)
    cols = list(rows[0])
    unknown = [c for c in cols if c not in table.c]
    if unknown:
        raise KeyError(f"not columns of {table.name}: {unknown}")
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return len(rows)
    _copy(session, table, cols, rows)
    return len(rows)


def _copy(session, table, cols, rows):
    from psycopg.types.json import Jsonb
    dialect = session.get_bind().dialect
    json_cols = [i for i, c in enumerate(cols) if isinstance(table.c[c].type.dialect_impl(dialect), JSON)]
    # Python-side defaults (created_at=utcnow …) that COPY would not apply: fill the missing ones.
    defaults = [(c.name, c.default.arg) for c in table.columns
                if c.name not in cols and c.default is not None and c.default.is_callable]
    names = cols + [name for name, _ in defaults]
    quoted = ", ".join(f'"{n}"' for n in names)
    connection = session.connection().connection.driver_connection
    with connection.cursor() as cur, cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            values = [row[c] for c in cols]
            for i in json_cols:
                if values[i] is not None:
                    values[i] = Jsonb(values[i])
            for _name, fn in defaults:
                values.append(fn(None))
            copy.write_row(values)
