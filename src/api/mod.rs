//! The StopCaster RPC API: what a call returns ([`outcome`]) and how it is made ([`client`]).

pub mod client;
pub mod outcome;

pub use client::{ClientConfig, LiveClient, StopCasterRequest};
pub use outcome::{ApiError, CallOutcome, Class, TransportError, TransportKind};
