"""One dynamic partition per line/variant (key ``<line>.<variant>``), added when a variant is
onboarded or its first batch lands."""

import dagster as dg

__all__ = ["line_variant_partitions"]

line_variant_partitions = dg.DynamicPartitionsDefinition(name="line_variant")
