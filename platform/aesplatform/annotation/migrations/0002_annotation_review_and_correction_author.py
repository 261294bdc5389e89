"""Review of ratings (issue 17): one review state per rating (accepted / corrected / rejected), and who corrected
a rating and why. Corrections stored before this were made by their annotators: they get corrected_by = annotator
before the constraint that asks every correction for an author is added."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def corrections_by_their_annotators(apps, schema_editor):
    Annotation = apps.get_model("annotation", "Annotation")
    Annotation.objects.filter(supersedes__isnull=False, corrected_by__isnull=True).update(
        corrected_by=models.F("annotator")
    )


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AnnotationReview',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('state', models.CharField(choices=[('accepted', 'Accepted'), ('corrected', 'Corrected by a curator'), ('rejected', 'Rejected (left out of the consensus)')], max_length=10)),
                ('reason', models.CharField(blank=True, max_length=500)),
                ('reviewed_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.AddField(
            model_name='annotation',
            name='corrected_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='corrections_made', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='annotation',
            name='correction_reason',
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.RunPython(corrections_by_their_annotators, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='annotation',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('corrected_by__isnull', True), ('correction_reason', ''), ('supersedes__isnull', True)), models.Q(('corrected_by__isnull', False), ('supersedes__isnull', False)), _connector='OR'), name='annotation_correction_has_author'),
        ),
        migrations.AddField(
            model_name='annotationreview',
            name='annotation',
            field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='review', to='annotation.annotation'),
        ),
        migrations.AddField(
            model_name='annotationreview',
            name='reviewed_by',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='reviews_made', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='annotationreview',
            name='version',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.annotation'),
        ),
        migrations.AddConstraint(
            model_name='annotationreview',
            constraint=models.CheckConstraint(condition=models.Q(('state__in', ['accepted', 'corrected', 'rejected'])), name='review_state_valid'),
        ),
        migrations.AddConstraint(
            model_name='annotationreview',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('state', 'rejected'), _negated=True), models.Q(('reason', ''), _negated=True), _connector='OR'), name='review_rejection_has_reason'),
        ),
    ]
