//! Reads a TOML config into typed `Config`, collecting every error with its place.
// (being written)
