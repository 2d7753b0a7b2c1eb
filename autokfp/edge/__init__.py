"""The edge: the only code that imports kfp (local runs, compilation, submission and
scheduling, the CLI)."""
