"""Cross-service tests, vendor fakes and benchmarks."""
