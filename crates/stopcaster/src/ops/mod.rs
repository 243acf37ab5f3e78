//! The operators' commands, one module each: [`enqueue`], [`cancel`], [`report`],
//! [`dead_letters`], [`migrate_broker`], [`stop`], [`pause`] (and resume) and [`audit`] (the
//! trail every other command writes to), with [`table`] for what they print and [`args`] for
//! arguments refused in words.
//!
//! They use [`crate::broker`], [`crate::store`], [`crate::dead_letters`], [`crate::export`]
//! and `stopcaster_live` like any client would, and never the worker's or the dashboard's
//! internals; nothing depends on them but the binary.

pub(crate) mod args;
pub(crate) mod audit;
pub(crate) mod cancel;
pub(crate) mod dead_letters;
pub(crate) mod enqueue;
pub(crate) mod filter;
pub(crate) mod migrate_broker;
pub(crate) mod pause;
pub(crate) mod report;
pub(crate) mod stop;
pub(crate) mod table;
