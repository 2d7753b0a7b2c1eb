"""The catalog: discovery of data sources, schemas with semantic types, DataHub metadata."""
