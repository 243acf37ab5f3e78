//! The operators' commands, one module each: [`enqueue`], [`cancel`], [`report`],
//! [`dead_letters`] and [`stop`], with [`table`] for what they print and [`args`] for
//! arguments refused in words.
//!
//! They use [`crate::broker`], [`crate::store`], [`crate::dead_letters`], [`crate::export`]
//! and `stopcaster_live` like any client would, and never the worker's or the dashboard's
//! internals; nothing depends on them but the binary.

pub mod args;
pub mod cancel;
pub mod dead_letters;
pub mod enqueue;
pub mod report;
pub mod stop;
pub mod table;
