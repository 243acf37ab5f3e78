//! The vocabulary of the project, free of I/O: checked identifiers ([`ids`]), the job message
//! ([`message`]: one type, written by `enqueue` and parsed by the worker), where a job stands
//! ([`status`]), durations as operators type them ([`since`]) and how a value from a message
//! is shown to people ([`display`]: escaped, bounded), and the operators' actions as the audit
//! trail records them ([`audit`]).
//!
//! Depends on nothing else in the crate (only on the vendor crate's identifiers and time
//! formats, which it re-exports); every other folder may depend on it.

pub(crate) mod audit;
pub(crate) mod display;
mod job_id;
mod message;
pub(crate) mod pause;
pub(crate) mod schedule;
mod since;
mod status;

pub(crate) use job_id::JobId;
pub(crate) use message::{Job, Parsed, parse_message, payload_text};
pub(crate) use since::parse_since;
pub use status::JobStatus;
pub(crate) use status::{Verdict, conclusion};
#[cfg(test)]
pub(crate) use stopcaster_live::ids::MAX_CASTER_ID_BYTES;
pub(crate) use stopcaster_live::ids::Rejection;
pub use stopcaster_live::ids::{CasterId, RegionId};
pub(crate) use stopcaster_live::time;
