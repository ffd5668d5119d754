//! End-to-end tests of a kuma-rs federation: a real `kuma-global`, real `kuma-zone`s and the
//! real `kumactl`, each a child process on free ports. This crate holds only tests
//! (`tests/`); it has no library code.
