//! The event backbone on SQLite, through the real broker and a consumer process: every
//! scenario of `common/`, one test each, named in the table of `common/backend.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

common::backbone_tests!(sqlite);
