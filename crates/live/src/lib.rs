//! The vendor side: everything that speaks Alibaba Cloud's protocol. Requests are signed
//! ([`signer`]) with an account's [`credentials`] ([`accounts`] maps job account names to them),
//! (or [`signer_v3`], as [`signing`] chooses) sent by the [`client`], and their answers classified ([`outcome`]) with the credentials
//! they echo removed ([`scrub`]); each answer's quota headers are read ([`quota`]) and its
//! `Date` corrects the clock calls are signed with ([`skew`]).
//!
//! Its vocabulary is its own: checked [`ids`] and the [`time`] formats the API speaks. It
//! knows nothing of queues or tables.

// Items are `pub(crate)` unless the crate root exports them: the lint keeps it so.
#![warn(unreachable_pub)]

pub mod accounts;
pub mod client;
pub mod credentials;
pub mod endpoint_clients;
pub mod endpoints;
pub mod ids;
pub mod outcome;
pub mod quota;
pub mod scrub;
pub mod signer;
pub mod signer_v3;
pub mod signing;
pub mod skew;
pub mod time;

pub use client::Answer;
pub use client::{ClientConfig, LiveClient, StopCasterRequest};
pub use endpoint_clients::{EndpointClients, EndpointSettings};
pub use outcome::{ApiError, CallOutcome, TransportError, TransportKind};
pub use quota::QuotaHeaders;
pub use signing::SignatureVersion;
