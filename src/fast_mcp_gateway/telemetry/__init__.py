"""Call records (batched off the hot path), tracing and redaction."""
