"""Bulk row writes for the paths that move many rows at once (imports, bulk audit rows).

`insert_rows` is the one way such paths insert, on the session's own connection (same
transaction, so a rollback still undoes them). On PostgreSQL it streams the rows with COPY;
elsewhere it is one DBAPI executemany of plain tuples, each value passed through its column
type's own bind processor (no per-row statement machinery: measured on the 100k import into
SQLite, the chunks' writes went 13.7 s -> 12.6 s). Rows are dicts with the same keys, or tuples in the
order of a list of columns; names that are not table columns are refused; Python-side column defaults
fill the columns the rows leave out.
"""

import datetime as dt
import gc
import json
import re
from contextlib import contextmanager

import orjson

from sqlalchemy import JSON, DateTime, Text, any_, bindparam, cast, insert, text
from sqlalchemy.exc import IntegrityError


@contextmanager
def batch_gc(threshold=50_000):
    """Run a long bulk job with the cyclic garbage collector out of its way.

    An import allocates millions of small containers and keeps a chunk's worth alive; with the
    default threshold (700 new objects) the collector runs constantly, and its older-generation
    passes scan every live object, the app's included. Measured on the 100k-row import into
    SQLite: 23.7 s -> 20.1 s. The objects alive at the start (the
    app, its models) are frozen out of the scans; the rows of a chunk are freed by reference
    counting as before, and cycles are still collected, just less often. Restored on exit.
    """
    saved = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, saved[1], max(saved[2], 100))
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def among(column, values, dialect_name):
    """`column IN values` for a lookup by thousands of keys at once. On PostgreSQL it is
    `column = ANY(:array)`, one array parameter: an IN list of 5,000 bound values is compiled and
    planned value by value (measured: 150 ms against 75 ms for 5,000 new e-mails). The array goes
    as the text of an array literal, cast to the column's array type: the driver's list adapter
    takes ~2.3 us a value (46 ms for a chunk's 5,000 e-mails), the literal ~0.3 us."""
    values = list(values)
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY
        return column == any_(cast(bindparam(None, array_literal(values), type_=Text), ARRAY(column.type)))
    return column.in_(values)


def array_literal(values):
    """PostgreSQL's text form of a one-dimensional array of ints or strings, each string quoted with
    its backslashes and double quotes escaped. A string holding NUL is left out: PostgreSQL's text
    cannot hold it, so no stored value equals it (and the driver would refuse the whole array)."""
    parts = []
    for value in values:
        if isinstance(value, str):
            if "\x00" not in value:
                parts.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(str(value))
        else:
            raise TypeError(f"not an array element: {value!r}")
    return "{" + ",".join(parts) + "}"


def index_scans(session, on=True):
    """PostgreSQL: plan this transaction's next statements as plain index scans (on), or as usual
    again (off): a bulk lookup by key (`among`) that must use its column's B-tree index. Sequential
    and bitmap scans are disabled with SET LOCAL (bitmap scans are the only ones a GIN index offers),
    so the transaction's end undoes it too. No-op on other databases."""
    if session.get_bind().dialect.name != "postgresql":
        return
    if on:
        session.execute(text("SELECT set_config('enable_seqscan', 'off', true), "
                             "set_config('enable_bitmapscan', 'off', true)"))
    else:
        session.execute(text("SELECT set_config(name, reset_val, true) FROM pg_settings "
                             "WHERE name IN ('enable_seqscan', 'enable_bitmapscan')"))


def insert_rows(session, table, rows, columns=None, own=None):
    """Insert `rows` into `table` (a Table or a mapped class); returns the count.

    Rows are dicts with the same keys, or, with `columns` (the column names, in order), tuples of
    values in that order (a hot path builds them straight off its records, no dict per row).
    `own`: {foreign-key column: values} that this transaction itself inserted into the referenced
    table (the ids of a chunk's new clients for their tag rows): no other transaction can see, and
    so delete, those rows before this one commits (PostgreSQL, see `_hold_references`).
    """
    if not rows:
        return 0
    table = getattr(table, "__table__", table)
    cols = list(columns) if columns is not None else list(rows[0])
    unknown = [c for c in cols if c not in table.c]
    if unknown:
        raise KeyError(f"not columns of {table.name}: {unknown}")
    if columns is None:
        rows = [[row[c] for c in cols] for row in rows]
    if session.get_bind().dialect.name == "postgresql":
        _copy(session, table, cols, rows, own or {})
    else:
        _executemany(session, table, cols, rows)
    return len(rows)


def _defaults(table, cols):
    """(name, value-or-callable, callable?) for the Python-side defaults of the columns not in `cols`."""
    return [(c.name, c.default.arg, c.default.is_callable) for c in table.columns
            if c.name not in cols and c.default is not None and (c.default.is_callable or c.default.is_scalar)]


def json_text(value, sort_keys=False, default=None):
    """JSON text of a value, as stored (the engine's JSON serializer, COPY's JSON columns, the audit
    log's structured values). orjson, compact: a client's 20-odd values in ~3 µs against ~16 µs with
    the json module. What orjson refuses (integers beyond 64 bits) the json module writes."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(value, default=default, option=option).decode()
    except TypeError:
        return json.dumps(value, sort_keys=sort_keys, ensure_ascii=False, default=default)


def json_value(data):
    """A stored JSON text as a value (the engine's JSON deserializer, so psycopg's too): orjson,
    which reads an existing client's two JSON columns in a fifth of the json module's time (an
    update-heavy import reads thousands a second). orjson reads an integer beyond 64 bits as a
    float: a text with 19 digits in a row (the shortest such integer has 19) goes to the json
    module, which keeps it exact, as does anything orjson refuses."""
    if (_LONG_DIGITS_TEXT if isinstance(data, str) else _LONG_DIGITS).search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19}")


def _copy(session, table, cols, rows, own):
    import psycopg
    dialect = session.get_bind().dialect
    json_cols = [i for i, c in enumerate(cols) if isinstance(table.c[c].type.dialect_impl(dialect), JSON)]
    defaults = _defaults(table, cols)
    names = cols + [name for name, _, _ in defaults]
    quoted = ", ".join(f'"{n}"' for n in names)
    connection = session.connection().connection.driver_connection
    statement = f'COPY "{table.name}" ({quoted}) FROM STDIN'
    held = _hold_references(session, table, cols, [name for name, _, _ in defaults], rows, own)
    # Timestamps go as their ISO text: the driver's own dumper takes ~2 µs a value, three of them
    # nearly half of a client row's formatting, and a chunk's rows mostly share one `now` object,
    # whose text is made once (the value is the very object of the previous row's).
    stamp_cols = [i for i, n in enumerate(names) if isinstance(table.c[n].type, DateTime)]
    stamps = {i: (_UNSEEN, None) for i in stamp_cols}
    try:
        with connection.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                values = list(row)
                for i in json_cols:
                    value = values[i]
                    if value is not None:
                        # COPY's text form of a JSON value is its JSON text (most are empty)
                        values[i] = "{}" if value == {} else json_text(value)
                for _name, arg, is_callable in defaults:
                    values.append(arg(None) if is_callable else arg)
                for i in stamp_cols:
                    value = values[i]
                    if value.__class__ is dt.datetime:
                        last, text = stamps[i]
                        if value is not last:
                            text = value.isoformat(sep=" ")
                            stamps[i] = (value, text)
                        values[i] = text
                copy.write_row(values)
    except psycopg.IntegrityError as exc:
        # The driver's own connection bypasses SQLAlchemy's error wrapping: give callers the same
        # IntegrityError an INSERT would raise (the import retries a chunk on it).
        raise IntegrityError(statement, None, exc) from exc
    if held:
        connection.execute("SELECT set_config('session_replication_role', 'origin', true)")


def _hold_references(session, table, cols, defaulted, rows, own):
    """Check a COPY's foreign keys once per referenced row instead of once per copied row.

    PostgreSQL checks each foreign key of each inserted row with a query of its own that also
    locks the referenced row (FOR KEY SHARE); with two import writers locking the same projects,
    statuses and users, the checks took 4.6 of the 100k import's 14.5 PostgreSQL CPU seconds
    (measured: the same import with the client's and tag's foreign keys dropped). Here the
    distinct values of each foreign-key column are locked the same way, one query per referenced
    table, and when every one of them exists the COPY runs with session_replication_role =
    replica, which leaves out the per-row checks; the setting is back to `origin` right after the
    COPY (at most the transaction's end). The rows are then held exactly as the checks would hold
    them: the referenced rows exist and cannot be deleted or have their key changed before this
    transaction ends. A value found missing, or a table this cannot cover, and the COPY goes with
    the database's own checks, which report the violation as before. Not covered: a role that may
    not set session_replication_role (superuser, or PostgreSQL 15's SET privilege on it), a table
    with any other trigger on INSERT or a rule (replica mode would skip them too), a foreign key of
    several columns, and a foreign-key column left to a column default."""
    plan = _reference_plan(session, table)
    if not plan or not rows:
        return False
    wanted = []
    for column, target, target_column in plan:
        if column in defaulted or (column not in cols and table.c[column].server_default is not None):
            return False
        if column not in cols:
            continue  # NULL in every row: nothing to check
        i = cols.index(column)
        values = {row[i] for row in rows}
        values.discard(None)
        values.difference_update(own.get(column, ()))
        if len({value.__class__ for value in values}) > 1:
            return False  # one array of one type per lookup; mixed values are left to the database
        if values:
            wanted.append((target, target_column, values))
    connection = session.connection().connection.driver_connection
    for target, target_column, values in wanted:
        # identifiers from the catalog (regclass text is quoted as needed); the values are bound
        found = connection.execute(
            f"SELECT {target_column} FROM {target} WHERE {target_column} = ANY(%s) "  # noqa: S608
            f"FOR KEY SHARE", [sorted(values)]).fetchall()
        if len(found) != len(values):
            return False
    connection.execute("SELECT set_config('session_replication_role', 'replica', true)")
    return True


def _reference_plan(session, table):
    """[(column, referenced table, referenced column)] of the table's foreign keys, read from the
    catalog (the database's constraints, whatever the models say), or None when `_hold_references`
    cannot stand in for the database's checks on this table or for this role. Read at every COPY
    (two catalog queries): a trigger added while the app runs is seen at once."""
    connection = session.connection().connection.driver_connection
    privilege = ("has_parameter_privilege('session_replication_role', 'SET')"
                 if connection.info.server_version >= 150000 else "false")
    # Any trigger on INSERT but the foreign keys' own checks rules it out: a user's trigger, and an
    # internal one too (a deferrable unique constraint rechecks through one).
    relation = connection.execute(
        f"SELECT c.oid, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR {privilege}, "  # noqa: S608
        "c.relhasrules, EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgtype & 4 <> 0 "
        "AND NOT (t.tgisinternal AND t.tgfoid = 'pg_catalog.\"RI_FKey_check_ins\"'::regproc)) "
        "FROM pg_class c WHERE c.oid = to_regclass(%s)",  # tgtype bit 2: INSERT
        [f'"{table.name}"']).fetchone()
    if relation is None or not relation[1] or relation[2] or relation[3]:
        return None
    keys = connection.execute(
        "SELECT a.attname, k.confrelid::regclass::text, quote_ident(r.attname), cardinality(k.conkey) "
        "FROM pg_constraint k "
        "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] "
        "JOIN pg_attribute r ON r.attrelid = k.confrelid AND r.attnum = k.confkey[1] "
        "WHERE k.contype = 'f' AND k.conrelid = %s ORDER BY k.conname", [relation[0]]).fetchall()
    if not keys or any(n != 1 or name not in table.c for name, _, _, n in keys):
        return None
    return [(name, target, target_column) for name, target, target_column, _ in keys]


_UNSEEN = object()


def _executemany(session, table, cols, rows):
    connection = session.connection()
    dialect = connection.dialect
    defaults = {name: (arg, is_callable) for name, arg, is_callable in _defaults(table, cols)}
    compiled = insert(table).compile(dialect=dialect, column_keys=cols + list(defaults))
    names = list(compiled.positiontup)  # the statement's own parameter order
    procs = [(i, p) for i, p in enumerate(table.c[n].type._cached_bind_processor(dialect) for n in names)
             if p is not None]
    position = {n: k for k, n in enumerate(cols)}
    given = [(i, position[n]) for i, n in enumerate(names) if n not in defaults]
    filled = [(i, *defaults[n]) for i, n in enumerate(names) if n in defaults]
    # Bind processors are pure: a value that is the very object of the previous row's (a chunk's
    # shared timestamp, None, small ints) reuses its result.
    seen = {i: (_UNSEEN, None) for i, _ in procs}
    params = []
    for row in rows:
        values = [None] * len(names)
        for i, k in given:
            values[i] = row[k]
        for i, arg, is_callable in filled:
            values[i] = arg(None) if is_callable else arg
        for i, proc in procs:
            value = values[i]
            last, out = seen[i]
            if value is not last:
                out = proc(value)
                seen[i] = (value, out)
            values[i] = out
        params.append(values)
    if dialect.name == "sqlite":
        _sqlite_values(connection, table, names, params)
    else:
        connection.exec_driver_sql(compiled.string, [tuple(p) for p in params])


def _sqlite_values(connection, table, names, params):
    """SQLite: one INSERT … VALUES (…), (…) … per few hundred rows, not one statement per row.

    The rows are the same either way; what changes is how often the driver comes back to Python.
    It releases the GIL around each statement, and a writer thread that has to win the GIL back
    after every row, beside a thread busy validating the next chunk, waits out the interpreter's
    switch interval each time (measured: a chunk's executemany took twice as long in a writer
    thread as inline)."""
    quote = connection.dialect.identifier_preparer.quote
    # identifiers of our own tables, quoted by the dialect; every value is a bound parameter
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) VALUES "  # noqa: S608
    one = "(" + ", ".join("?" * len(names)) + ")"
    # Batches of a power of two rows (≤ 512), the rest in smaller powers of two: the driver keeps
    # each distinct statement prepared, and a few shapes per table keep that cache small (one
    # statement per remainder length held ~45 MB more on the 100k import).
    per = 512
    while per > 1 and per * len(names) > _SQLITE_MAX_VARIABLES:
        per //= 2
    statements = {}
    start = 0
    while start < len(params):
        size = per
        while size > len(params) - start:
            size //= 2
        stmt = statements.get(size)
        if stmt is None:
            stmt = statements[size] = head + ", ".join([one] * size)
        batch = params[start:start + size]
        connection.exec_driver_sql(stmt, tuple(v for row in batch for v in row))
        start += size


# The bound parameters one SQLite statement may carry (SQLITE_MAX_VARIABLE_NUMBER since 3.32; the
# oldest SQLite Python 3.11 builds with allows 999)
_SQLITE_MAX_VARIABLES = 999 if __import__("sqlite3").sqlite_version_info < (3, 32) else 32766
