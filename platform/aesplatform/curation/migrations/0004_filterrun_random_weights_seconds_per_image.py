from django.db import migrations, models


def mark_random_weight_runs(apps, schema_editor):
    """Runs recorded without a checkpoint were scored with random weights."""
    apps.get_model("curation", "FilterRun").objects.filter(clip_checkpoint="").update(random_weights=True)


class Migration(migrations.Migration):

    dependencies = [
        ("curation", "0003_job_lifecycle"),
    ]

    operations = [
        migrations.AddField(
            model_name="filterrun",
            name="random_weights",
            field=models.BooleanField(
                default=False, help_text="Scored without a checkpoint: CLIP signals are noise, so they neither "
                "reject an image nor group near duplicates; the run and its batches say so."),
        ),
        migrations.AddField(
            model_name="filterrun",
            name="seconds_per_image",
            field=models.FloatField(
                blank=True, null=True, help_text="Measured scoring time per image (wall clock of the worker, this "
                "run); new runs with the same model estimate their duration from it."),
        ),
        migrations.RunPython(mark_random_weight_runs, migrations.RunPython.noop),
    ]
