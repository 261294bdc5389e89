"""Template helpers of every job page: {% job_kind job as kind %} (the URL name of a job's kind, for the Resume /
Cancel forms of views_jobs), {% job_eta job as eta %} (seconds left, None: not available) and the `duration`
filter ("about 3 min")."""

from django import template

register = template.Library()


@register.simple_tag
def job_kind(job) -> str:
    from annotator_ui.views_jobs import JOB_KIND_OF_MODEL

    return JOB_KIND_OF_MODEL[type(job)]


@register.simple_tag
def job_eta(job) -> float | None:
    from aesplatform.common.jobs import job_eta_seconds

    return job_eta_seconds(job)


@register.filter
def duration(seconds) -> str:
    """A rough human duration: "under a second", "12 s", "about 4 min", "about 2 h 10 min"; "not available"
    for None."""
    if seconds is None or seconds == "":
        return "not available"
    seconds = float(seconds)
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"about {hours} h {rest} min" if rest else f"about {hours} h"
