//! A local Cloud Foundry for tests, benchmarks and the demo.
