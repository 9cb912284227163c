//! Cgroup file-writing tests.
