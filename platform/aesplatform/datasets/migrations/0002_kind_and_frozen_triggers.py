"""A version's kind, and database triggers that refuse any change to a frozen version.

Once `state` is 'frozen', PostgreSQL and SQLite both refuse: INSERT/UPDATE/DELETE of its items, changes to the
fields that define it (everything but the description and updated_at), deleting it, and changing its campaigns.
The freeze itself inserts the items while the version is still a draft and sets 'frozen' in the same transaction.
"""

from django.conf import settings
from django.db import migrations, models

VERSION = "datasets_datasetversion"
ITEM = "datasets_datasetitem"
M2M = "datasets_datasetversion_campaigns"
# The columns of DatasetVersion that define it (models.FROZEN_VERSION_FIELDS, as they were when this was written).
DEFINING = (
    "name", "version", "state", "kind", "include_imported_labels", "consensus_method", "min_ratings",
    "split_seed", "test_ratio", "code_version", "counts", "frozen_at", "created_by_id",
)
MESSAGE = "dataset version is frozen: it cannot change"

POSTGRES_CREATE = f"""
CREATE OR REPLACE FUNCTION datasets_refuse_frozen_child() RETURNS trigger AS $$
DECLARE
  old_version bigint;
  new_version bigint;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN old_version := OLD.{{col}}; END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN new_version := NEW.{{col}}; END IF;
  IF EXISTS (SELECT 1 FROM {VERSION} WHERE state = 'frozen' AND id IN (old_version, new_version)) THEN
    RAISE EXCEPTION '{MESSAGE} (version %, table %)', coalesce(old_version, new_version), TG_TABLE_NAME
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


def _pg_child_function(name: str, col: str) -> str:
    return POSTGRES_CREATE.replace("datasets_refuse_frozen_child", name).replace("{col}", col)


PG_FORWARD = [
    _pg_child_function("datasets_refuse_frozen_item", "version_id"),
    _pg_child_function("datasets_refuse_frozen_campaigns", "datasetversion_id"),
    f"""
CREATE OR REPLACE FUNCTION datasets_refuse_frozen_version() RETURNS trigger AS $$
BEGIN
  IF OLD.state = 'frozen' THEN
    IF TG_OP = 'DELETE' OR {" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in DEFINING)} THEN
      RAISE EXCEPTION '{MESSAGE} (version %)', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
""",
    f"CREATE TRIGGER datasets_item_frozen BEFORE INSERT OR UPDATE OR DELETE ON {ITEM} "
    f"FOR EACH ROW EXECUTE FUNCTION datasets_refuse_frozen_item();",
    f"CREATE TRIGGER datasets_campaigns_frozen BEFORE INSERT OR UPDATE OR DELETE ON {M2M} "
    f"FOR EACH ROW EXECUTE FUNCTION datasets_refuse_frozen_campaigns();",
    f"CREATE TRIGGER datasets_version_frozen BEFORE UPDATE OR DELETE ON {VERSION} "
    f"FOR EACH ROW EXECUTE FUNCTION datasets_refuse_frozen_version();",
]
PG_BACKWARD = [
    f"DROP TRIGGER IF EXISTS datasets_item_frozen ON {ITEM};",
    f"DROP TRIGGER IF EXISTS datasets_campaigns_frozen ON {M2M};",
    f"DROP TRIGGER IF EXISTS datasets_version_frozen ON {VERSION};",
    "DROP FUNCTION IF EXISTS datasets_refuse_frozen_item();",
    "DROP FUNCTION IF EXISTS datasets_refuse_frozen_campaigns();",
    "DROP FUNCTION IF EXISTS datasets_refuse_frozen_version();",
]


def _sqlite_child(table: str, col: str, prefix: str) -> list[str]:
    frozen = f"(SELECT state FROM {VERSION} WHERE id = {{row}}.{col}) = 'frozen'"
    raise_ = f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;"
    return [
        f"CREATE TRIGGER {prefix}_frozen_insert BEFORE INSERT ON {table} "
        f"WHEN {frozen.format(row='NEW')} {raise_}",
        f"CREATE TRIGGER {prefix}_frozen_update BEFORE UPDATE ON {table} "
        f"WHEN {frozen.format(row='OLD')} OR {frozen.format(row='NEW')} {raise_}",
        f"CREATE TRIGGER {prefix}_frozen_delete BEFORE DELETE ON {table} "
        f"WHEN {frozen.format(row='OLD')} {raise_}",
    ]


SQLITE_FORWARD = [
    *_sqlite_child(ITEM, "version_id", "datasets_item"),
    *_sqlite_child(M2M, "datasetversion_id", "datasets_campaigns"),
    f"CREATE TRIGGER datasets_version_frozen_update BEFORE UPDATE ON {VERSION} "
    f"WHEN OLD.state = 'frozen' AND ({' OR '.join(f'NEW.{c} IS NOT OLD.{c}' for c in DEFINING)}) "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
    f"CREATE TRIGGER datasets_version_frozen_delete BEFORE DELETE ON {VERSION} "
    f"WHEN OLD.state = 'frozen' BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER IF EXISTS {name};"
    for name in (
        "datasets_item_frozen_insert", "datasets_item_frozen_update", "datasets_item_frozen_delete",
        "datasets_campaigns_frozen_insert", "datasets_campaigns_frozen_update", "datasets_campaigns_frozen_delete",
        "datasets_version_frozen_update", "datasets_version_frozen_delete",
    )
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no frozen-version triggers for database {schema_editor.connection.vendor!r}")
        for sql in statements:
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0001_initial'),
        ('datasets', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='datasetversion',
            name='kind',
            field=models.CharField(choices=[('mixed', 'Overall-only and expert images'), ('expert', 'Expert only (all 12 dimensions required)'), ('overall', 'Overall score only')], default='mixed', max_length=8),
        ),
        migrations.AddConstraint(
            model_name='datasetversion',
            constraint=models.CheckConstraint(condition=models.Q(('kind__in', ['mixed', 'expert', 'overall'])), name='datasetversion_kind_valid'),
        ),
        migrations.RunPython(
            _run({"postgresql": PG_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": PG_BACKWARD, "sqlite": SQLITE_BACKWARD}),
        ),
    ]
