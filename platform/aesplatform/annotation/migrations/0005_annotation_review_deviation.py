"""The review stream in SQL (issue 20): each rating's campaign on its row (filled from its task) and its deviation
from the campaign's consensus (NULL until the next consensus recomputation stores it), with the indexes the review
stream's orders and filters read."""

import django.db.models.deletion
from django.db import migrations, models

FILL_CAMPAIGN = """
UPDATE annotation_annotation AS a SET campaign_id = t.campaign_id
FROM annotation_task AS t WHERE t.id = a.task_id AND a.campaign_id IS NULL
"""

# The "far from consensus first" order: (campaign, deviation DESC NULLS LAST, id). PostgreSQL only: SQLite (the
# development database) has no NULLS LAST in an index; there the order is sorted.
DEVIATION_INDEX = (
    "CREATE INDEX IF NOT EXISTS annotation_campaign_deviation ON annotation_annotation "
    "(campaign_id, review_deviation DESC NULLS LAST, id)"
)


def deviation_index_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DEVIATION_INDEX)


def deviation_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS annotation_campaign_deviation")


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0004_campaign_snapshot'),
    ]

    operations = [
        migrations.AddField(
            model_name='annotation',
            name='review_deviation',
            field=models.FloatField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='annotation',
            name='campaign',
            field=models.ForeignKey(blank=True, db_index=False, editable=False, null=True,
                                    on_delete=django.db.models.deletion.PROTECT, related_name='+',
                                    to='annotation.campaign'),
        ),
        migrations.RunSQL(FILL_CAMPAIGN, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='annotation',
            name='campaign',
            field=models.ForeignKey(blank=True, db_index=False, editable=False,
                                    on_delete=django.db.models.deletion.PROTECT, related_name='+',
                                    to='annotation.campaign'),
        ),
        migrations.AddIndex(
            model_name='annotation',
            index=models.Index(fields=['campaign', 'id'], name='annotation_campaign_id'),
        ),
        migrations.RunPython(deviation_index_create, deviation_index_drop),
        migrations.AddIndex(
            model_name='task',
            index=models.Index(condition=models.Q(('is_gold', True)), fields=['campaign'], name='task_gold'),
        ),
        migrations.AddIndex(
            model_name='assignment',
            index=models.Index(condition=models.Q(('state', 'flagged')), fields=['task'], name='assignment_flagged'),
        ),
    ]
