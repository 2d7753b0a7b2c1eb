"""Bundled example data: seeded generators for demos, tutorials and end-to-end tests."""
