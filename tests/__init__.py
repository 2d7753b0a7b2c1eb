"""The autokfp test suite (a package, so tests/components and tests/pipelines do not shadow
the real ``components`` and ``pipelines`` packages on sys.path)."""
