"""{% job_kind job as kind %}: the URL name of a job's kind, for the Resume / Cancel forms (views_jobs)."""

from django import template

register = template.Library()


@register.simple_tag
def job_kind(job) -> str:
    from annotator_ui.views_jobs import JOB_KIND_OF_MODEL

    return JOB_KIND_OF_MODEL[type(job)]
