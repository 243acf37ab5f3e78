//! stopcaster: stops Alibaba Cloud ApsaraVideo Live production studios (casters) on request.
//!
//! Jobs arrive on RabbitMQ ([`broker`], [`worker`]), become typed [`domain::Job`]s at the
//! edge, are paced to the account's quota ([`pacer`]), sent as signed StopCaster calls
//! ([`api`], [`signer`]), judged ([`verdict`]), retried with [`backoff`] or dead-lettered, and
//! every job and attempt is recorded in Postgres ([`storage`]). [`fake_live`] is a local
//! stand-in of the API endpoint.

pub mod accounts;
pub mod api;
pub mod backoff;
pub mod broker;
pub mod config;
pub mod credentials;
pub mod dead_letters;
pub mod domain;
pub mod enqueue;
pub mod fake_live;
pub mod http;
pub mod job;
pub mod metrics;
pub mod pacer;
pub mod report;
pub mod signer;
pub mod storage;
pub mod telemetry;
pub mod verdict;
pub mod worker;
