//! The operators' commands, one module each: [`enqueue`], [`cancel`], [`report`],
//! [`dead_letters`] and [`stop`], with [`table`] for what they print, [`errors`] for
//! the one line a failed command prints and [`args`] for arguments refused in words.
//!
//! They use [`crate::broker`], [`crate::store`] and `stopcaster_live` like any client would,
//! and never the worker's internals.

pub mod args;
pub mod cancel;
pub mod dead_letters;
pub mod enqueue;
pub mod errors;
pub mod report;
pub mod stop;
pub mod table;
