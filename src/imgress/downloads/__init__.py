"""Batch-download backends: address guard, fetcher, archive names and the zip stream."""
