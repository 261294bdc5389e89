"""The review stream in SQL (issue 20): each rating's campaign on its row (filled from its task) and its deviation
from the campaign's consensus (NULL until the next consensus recomputation stores it), with the indexes the review
stream's orders and filters read."""

import django.db.models.deletion
from django.db import migrations, models

FILL_CAMPAIGN = """
UPDATE annotation_annotation AS a SET campaign_id = t.campaign_id
FROM annotation_task AS t WHERE t.id = a.task_id AND a.campaign_id IS NULL
"""


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
        migrations.AddIndex(
            model_name='annotation',
            index=models.Index(models.F('campaign'), models.OrderBy(models.F('review_deviation'), descending=True,
                                                                    nulls_last=True),
                               models.F('id'), name='annotation_campaign_deviation'),
        ),
        migrations.AddIndex(
            model_name='task',
            index=models.Index(condition=models.Q(('is_gold', True)), fields=['campaign'], name='task_gold'),
        ),
        migrations.AddIndex(
            model_name='assignment',
            index=models.Index(condition=models.Q(('state', 'flagged')), fields=['task'], name='assignment_flagged'),
        ),
    ]
