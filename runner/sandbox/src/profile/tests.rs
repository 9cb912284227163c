//! Profile validation tests.
