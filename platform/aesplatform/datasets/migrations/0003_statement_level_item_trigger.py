"""PostgreSQL: the frozen-version check of inserted dataset items runs once per statement, not once per row.

Migration 0002's row-level trigger looked up the version for each of the 108,000 items a freeze inserts (COPY).
Inserts are now checked by a statement-level trigger over the statement's transition table (the distinct versions
of all the new rows): the same guarantee, an INSERT or COPY that puts any item into a frozen version fails, naming
the version. UPDATE and DELETE keep 0002's row-level BEFORE trigger (nothing bulk updates items; it refuses before
any other constraint, e.g. moving an item into a frozen version that already holds its image). SQLite has no
statement-level triggers; its row-level triggers from 0002 stay.
"""

from django.db import migrations

ITEM = "datasets_datasetitem"
VERSION = "datasets_datasetversion"
MESSAGE = "dataset version is frozen: it cannot change"


def _function(name: str, rows: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
DECLARE
  frozen bigint;
BEGIN
  SELECT v.id INTO frozen FROM {VERSION} v
   WHERE v.state = 'frozen' AND v.id IN (SELECT DISTINCT version_id FROM ({rows}) AS touched)
   LIMIT 1;
  IF frozen IS NOT NULL THEN
    RAISE EXCEPTION '{MESSAGE} (version %, table %)', frozen, TG_TABLE_NAME
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
"""


PG_FORWARD = [
    f"DROP TRIGGER IF EXISTS datasets_item_frozen ON {ITEM};",
    _function("datasets_refuse_frozen_item_insert", "SELECT version_id FROM new_rows"),
    f"CREATE TRIGGER datasets_item_frozen_insert AFTER INSERT ON {ITEM} REFERENCING NEW TABLE AS new_rows "
    f"FOR EACH STATEMENT EXECUTE FUNCTION datasets_refuse_frozen_item_insert();",
    # 0002's function, for UPDATE and DELETE only
    f"CREATE TRIGGER datasets_item_frozen_change BEFORE UPDATE OR DELETE ON {ITEM} "
    f"FOR EACH ROW EXECUTE FUNCTION datasets_refuse_frozen_item();",
]


def _restore_row_trigger() -> list[str]:
    from importlib import import_module

    previous = import_module("aesplatform.datasets.migrations.0002_kind_and_frozen_triggers")
    return [
        f"DROP TRIGGER IF EXISTS datasets_item_frozen_insert ON {ITEM};",
        f"DROP TRIGGER IF EXISTS datasets_item_frozen_change ON {ITEM};",
        "DROP FUNCTION IF EXISTS datasets_refuse_frozen_item_insert();",
        previous._pg_child_function("datasets_refuse_frozen_item", "version_id"),
        f"CREATE TRIGGER datasets_item_frozen BEFORE INSERT OR UPDATE OR DELETE ON {ITEM} "
        f"FOR EACH ROW EXECUTE FUNCTION datasets_refuse_frozen_item();",
    ]


def _run(forward: bool):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return  # SQLite keeps 0002's row-level triggers
        for sql in PG_FORWARD if forward else _restore_row_trigger():
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [("datasets", "0002_kind_and_frozen_triggers")]

    operations = [migrations.RunPython(_run(True), _run(False))]
