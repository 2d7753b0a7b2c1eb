"""The ``discovery`` pipeline: crawl every configured source into the catalog."""
