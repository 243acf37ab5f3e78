//! The integration tests, one binary so CI links once: a module per concern, each against the
//! real RabbitMQ, Postgres, the stand-in and the `stopcaster` binary (`common::TestEnv`).
//! `restarts` stops shared services, and `outage_parking::consumer_timeout_*` changes one:
//! `.config/nextest.toml` runs them one at a time and `scripts/test` in a second pass of their
//! own.

mod common;

mod broker_migration;
mod broker_nodes;
mod clock_skew;
mod cluster;
mod credentials;
mod credentials_provider;
mod dashboard;
mod endpoints;
mod fake_live;
mod fake_live_sts;
mod far_endpoint;
mod fleet;
mod monitoring;
mod operator_pause;
mod operators;
mod outage;
mod outage_parking;
mod pacer;
mod python_sdk;
mod quota_headers;
mod reliability;
mod restarts;
mod schedule;
mod signature_v3;
mod signature_vectors;
mod signature_vectors_v3;
mod terminal;
mod token_scrub;
mod worker;
