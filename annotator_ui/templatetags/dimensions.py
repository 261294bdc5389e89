"""{{ keys|dimension_names }}: the human names of dimension keys (model_core.standard), for tables that list them."""

from django import template

from annotator_ui.charts import dimension_name

register = template.Library()


@register.filter
def dimension_names(keys) -> list[str]:
    return [dimension_name(k) for k in keys or ()]
