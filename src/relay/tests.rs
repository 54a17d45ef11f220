//! Unit tests of the relay core.
