//! The vendor side: everything that speaks Alibaba Cloud's protocol. Requests are signed
//! ([`signer`]) with an account's [`credentials`] ([`accounts`] maps job account names to them),
//! sent by the [`client`], and their answers classified ([`outcome`]).
//!
//! Depends only on [`crate::domain`]; it knows nothing of queues or tables.

pub mod accounts;
pub mod client;
pub mod credentials;
pub mod outcome;
pub mod signer;

pub use client::{ClientConfig, LiveClient, StopCasterRequest};
pub use outcome::{ApiError, CallOutcome, TransportError, TransportKind};
