"""Test scaffolding shared by the model, unit and integration suites (never imported by the product)."""
