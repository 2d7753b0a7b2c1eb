"""The catalog: discovery of data sources, schemas with semantic types, schema evolution,
lineage, and DataHub metadata (see docs/catalog.md)."""

import os

# DataHub's client reads this once, when first imported: autokfp never lets it phone home.
os.environ.setdefault("DATAHUB_TELEMETRY_ENABLED", "false")
