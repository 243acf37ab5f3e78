//! stopcaster: stops Alibaba Cloud ApsaraVideo Live production studios (casters) on request.
//!
//! One folder per role (docs/architecture.md):
//! - `domain`: the vocabulary (ids, the job message, statuses), free of I/O;
//! - `store`: every SQL statement;
//! - `broker`: the RabbitMQ topology and publishing with confirms;
//! - `redact`: what of a setting may be shown (URLs without passwords);
//! - `dead_letters`: listing and replaying the dead-letter queue;
//! - `export`: the job row's columns and CSV, as the report and the dashboard write them;
//! - `errors`: the one line a failed command (the worker and the dashboard included) prints;
//! - `worker`: the consumer (sessions, jobs, verdicts, the pacer, metrics);
//! - `ops`: the operators' commands (enqueue, cancel, report, dead letters, stop);
//! - `dashboard`: the web dashboard over the results tables and the queues.
//!
//! `ops` and `dashboard` sit side by side at the top and never use each other: what both need
//! (`dead_letters`, `export`, `errors`, `store`, `broker`, `domain`) lies below them.
//!
//! The vendor side (signing, the StopCaster client, outcomes, credentials) is the
//! `stopcaster-live` crate; the stand-in of the API is `stopcaster-fake-live`, and the binary
//! with its benchmark driver is the workspace's root package.
//!
//! Modules are private; what the binary and the tests use is re-exported below, and nothing
//! more.

// Items are `pub(crate)` unless the crate root exports them: the lint keeps it so.
#![warn(unreachable_pub)]

mod broker;
mod config;
mod dashboard;
mod dead_letters;
mod domain;
mod errors;
mod export;
mod ops;
mod redact;
mod store;
mod telemetry;
mod worker;

/// Command-line settings, each a flag and an environment variable.
pub use config::{
    ApiArgs, BrokerArgs, DEFAULT_AMQP_URL, DEFAULT_PACER_MARGIN_MS, DEFAULT_QPS, DatabaseArgs,
    WorkerArgs,
};
pub use telemetry::{LogFormat, init as init_logging};

/// The vocabulary.
pub use domain::{CasterId, JobStatus, RegionId};

/// The vendor side.
pub use stopcaster_live::client::signed_query;
pub use stopcaster_live::credentials::{Credentials, Secret};
pub use stopcaster_live::signer;
pub use stopcaster_live::{
    ApiError, CallOutcome, ClientConfig, LiveClient, StopCasterRequest, TransportKind,
};

/// RabbitMQ names and helpers.
pub use broker::{
    JOB_ID_HEADER, MigrateError, MigrateReport, Names, QueueMigration, REASON_HEADER,
    connect as connect_broker, declare_topology, header_text,
};

/// The database.
pub use store::{JobSearch, explain_search, migrate, pacer_state, pool as database_pool};
/// What the benchmark driver reads of a run's progress, and how it cleans up after itself.
pub use store::{
    call_span, committed_transactions, count_finished_jobs, count_jobs_with_status, drop_database,
};

/// The worker.
pub use worker::pacer;
pub use worker::run as run_worker;

/// The web dashboard.
pub use dashboard::{DashboardArgs, run as run_dashboard};

pub use errors::{Targets as ErrorTargets, one_line as error_line};
pub use export::COLUMNS as REPORT_COLUMNS;
pub use ops::audit::{ActorArgs, AuditArgs, run as run_audit};
/// The operators' commands.
pub use ops::cancel::{CancelArgs, run as run_cancel};
pub use ops::dead_letters::{DeadLettersCommand, run as run_dead_letters};
pub use ops::enqueue::{
    EnqueueArgs, plan as plan_enqueue, publish as publish_enqueue, run as run_enqueue,
};
pub use ops::migrate_broker::run as run_migrate_broker;
pub use ops::pause::{PauseArgs, ResumeArgs, run_pause, run_resume};
pub use ops::report::{NARROW_COLUMNS as REPORT_NARROW_COLUMNS, ReportArgs, run as run_report};
pub use ops::stop::run as run_stop;
