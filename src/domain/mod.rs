//! The vocabulary of the project, free of I/O: checked identifiers ([`ids`]), the job message
//! ([`message`]: one type, written by `enqueue` and parsed by the worker) and where a job stands
//! ([`status`]).
//!
//! Depends on nothing else in the crate; every other folder may depend on it.

mod ids;
mod message;
pub mod schedule;
mod status;
pub mod time;

#[cfg(test)]
pub use ids::MAX_CASTER_ID_BYTES;
pub use ids::{AccountName, CasterId, JobId, RegionId, Rejection};
pub use message::{Job, Parsed, parse_message, payload_text};
pub use status::{JobStatus, Verdict, conclusion};
