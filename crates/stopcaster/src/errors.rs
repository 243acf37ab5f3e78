//! What a failed command prints: one line naming what it could not reach (the URL without its
//! password) and why, once. The drivers' errors repeat their causes through their source
//! chains (`IO error: Connection refused: Connection refused`) and never name the server; an
//! operator needs the server and a cause in words, with the next step where there is one
//! (`stopcaster migrate` for a missing database). `main.rs` logs the full chain at debug level.
//!
//! Pure functions over error values, unit-tested without a server.

use std::error::Error;
use std::io;

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

use crate::broker::BrokerError;
use crate::redact::url_without_password;

/// The servers a command talks to, as configured: the URLs its errors are about.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    pub broker: Option<String>,
    pub database: Option<String>,
}

/// Why a server could not be used, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Nothing listens there.
    Refused,
    /// No answer in time.
    TimedOut,
    /// The server ended the connection.
    Closed,
    /// The server refused the login (wrong user or password, no access): its words.
    Authentication(String),
    /// The database named in the URL does not exist: the server's words.
    MissingDatabase(String),
    /// The database exists but has not been migrated: the server's words.
    MissingTables(String),
    /// Any other failure to reach the server (a name that does not resolve, no route): the
    /// system's words.
    Unreachable(String),
    /// The URL itself cannot be used.
    InvalidUrl(String),
    /// Anything else, the innermost message.
    Other(String),
}

/// A failed command's error as one line (without the `error: ` prefix).
pub fn one_line(error: &(dyn Error + 'static), targets: &Targets) -> String {
    for e in chain(error) {
        if let Some(cause) = broker_cause(e) {
            return describe("RabbitMQ", targets.broker.as_deref(), &cause, error);
        }
        if let Some(cause) = e.downcast_ref::<sqlx::Error>().and_then(database_cause) {
            return describe("Postgres", targets.database.as_deref(), &cause, error);
        }
    }
    chain_once(error)
}

/// The line for a cause at a server; `error` is the whole error, for the causes that are not
/// about connecting (there the command's own words say what it was doing).
fn describe(
    service: &str,
    url: Option<&str>,
    cause: &Cause,
    error: &(dyn Error + 'static),
) -> String {
    let at = match url {
        Some(url) => format!("{service} at {}", url_without_password(url)),
        None => service.to_owned(),
    };
    match cause {
        Cause::Refused => {
            format!("cannot connect to {at}: connection refused (is it running, on that port?)")
        }
        Cause::TimedOut => format!("cannot connect to {at}: no answer in time"),
        Cause::Closed => format!("{at}: the server closed the connection"),
        Cause::Authentication(detail) => {
            format!("cannot connect to {at}: authentication failed ({detail})")
        }
        Cause::MissingDatabase(detail) => {
            format!("cannot connect to {at}: {detail}; `stopcaster migrate` creates it")
        }
        Cause::MissingTables(detail) => format!(
            "{at} has no stopcaster tables ({detail}); run `stopcaster migrate` to create them"
        ),
        Cause::Unreachable(detail) => format!("cannot connect to {at}: {detail}"),
        Cause::InvalidUrl(detail) => format!("invalid URL for {at}: {detail}"),
        Cause::Other(_) => format!("{} ({at})", chain_once(error)),
    }
}

/// The cause in a RabbitMQ error; `None` when `e` is not one.
pub(crate) fn broker_cause(e: &(dyn Error + 'static)) -> Option<Cause> {
    if let Some(BrokerError::Timeout(_)) = e.downcast_ref::<BrokerError>() {
        return Some(Cause::TimedOut);
    }
    let e = e.downcast_ref::<lapin::Error>()?;
    Some(match e.kind() {
        lapin::ErrorKind::IOError(io) => io_cause(io),
        lapin::ErrorKind::AuthProviderError(detail) => Cause::Authentication(detail.clone()),
        lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                Cause::Authentication(amqp.get_message().as_str().to_owned())
            }
            _ => Cause::Other(amqp.get_message().as_str().to_owned()),
        },
        lapin::ErrorKind::MissingHeartbeatError => Cause::Closed,
        _ => Cause::Other(e.to_string()),
    })
}

/// The cause in a Postgres error; `None` for errors about what was asked rather than about the
/// server (those read well as they are).
pub(crate) fn database_cause(e: &sqlx::Error) -> Option<Cause> {
    match e {
        sqlx::Error::Io(io) => Some(io_cause(io)),
        sqlx::Error::PoolTimedOut => Some(Cause::TimedOut),
        sqlx::Error::Configuration(detail) => Some(Cause::InvalidUrl(detail.to_string())),
        sqlx::Error::Tls(detail) => Some(Cause::Other(format!("TLS: {detail}"))),
        sqlx::Error::Database(db) => sqlstate_cause(db.code().as_deref()?, db.message()),
        _ => None,
    }
}

/// The cause a Postgres SQLSTATE stands for, where it is about the server or the login.
pub(crate) fn sqlstate_cause(code: &str, message: &str) -> Option<Cause> {
    let message = message.to_owned();
    Some(match code {
        // invalid_catalog_name: the database in the URL does not exist.
        "3D000" => Cause::MissingDatabase(message),
        // invalid_authorization_specification (also: no such role), invalid_password.
        "28000" | "28P01" => Cause::Authentication(message),
        // undefined_table: a database that was never migrated.
        "42P01" => Cause::MissingTables(message),
        // cannot_connect_now, too_many_connections.
        "57P03" | "53300" => Cause::Other(message),
        _ => return None,
    })
}

fn io_cause(e: &io::Error) -> Cause {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Cause::Refused,
        io::ErrorKind::TimedOut => Cause::TimedOut,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe => Cause::Closed,
        // A name that does not resolve, and the like: the innermost message says it best.
        _ => Cause::Unreachable(innermost(e).to_string()),
    }
}

/// `error` and its sources, outermost first.
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

fn innermost<'a>(error: &'a (dyn Error + 'static)) -> &'a (dyn Error + 'static) {
    chain(error).last().unwrap_or(error)
}

/// The messages of the chain joined by `: `, each said once: a source whose text its outer
/// error already contains (most do, through `#[error("...: {0}")]`) is left out.
pub(crate) fn chain_once(error: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    for e in chain(error) {
        let text = e.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMQP: &str = "amqp://guest:s3cret@127.0.0.1:5672/%2f";
    const PG: &str = "postgres://root:s3cret@127.0.0.1:5432/stopcaster";

    fn targets() -> Targets {
        Targets {
            broker: Some(AMQP.into()),
            database: Some(PG.into()),
        }
    }

    fn refused() -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )
    }

    #[test]
    fn a_refused_broker_is_named_once_without_its_password() {
        let e = BrokerError::Amqp(lapin::Error::from(refused()));
        let line = one_line(&e, &targets());
        assert_eq!(
            line,
            "cannot connect to RabbitMQ at amqp://guest@127.0.0.1:5672/%2f: connection refused \
             (is it running, on that port?)"
        );
    }

    #[test]
    fn a_refused_database_is_named_through_any_wrapping() {
        #[derive(Debug, thiserror::Error)]
        #[error("database: {0}")]
        struct Wrapper(#[source] sqlx::Error);
        let e = Wrapper(sqlx::Error::Io(refused()));
        let line = one_line(&e, &targets());
        assert!(
            line.starts_with("cannot connect to Postgres at postgres://root@127.0.0.1:5432/stopcaster: connection refused"),
            "{line}"
        );
        assert!(!line.contains("s3cret"));
        let timeout = one_line(&sqlx::Error::PoolTimedOut, &targets());
        assert!(timeout.ends_with("no answer in time"), "{timeout}");
    }

    #[test]
    fn broker_login_failures_say_authentication() {
        let amqp = lapin::protocol::AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
            "ACCESS_REFUSED - Login was refused".into(),
        );
        let e = lapin::Error::from(lapin::ErrorKind::ProtocolError(amqp));
        assert_eq!(
            one_line(&e, &targets()),
            "cannot connect to RabbitMQ at amqp://guest@127.0.0.1:5672/%2f: authentication \
             failed (ACCESS_REFUSED - Login was refused)"
        );
    }

    #[test]
    fn a_broker_that_does_not_answer_is_named() {
        let e = crate::dead_letters::DeadLetterError::from(BrokerError::Timeout(
            std::time::Duration::from_secs(10),
        ));
        assert_eq!(
            one_line(&e, &targets()),
            "cannot connect to RabbitMQ at amqp://guest@127.0.0.1:5672/%2f: no answer in time"
        );
    }

    #[test]
    fn sqlstates_in_words() {
        assert_eq!(
            sqlstate_cause("3D000", "database \"x\" does not exist"),
            Some(Cause::MissingDatabase(
                "database \"x\" does not exist".into()
            ))
        );
        assert!(matches!(
            sqlstate_cause("28P01", "m"),
            Some(Cause::Authentication(_))
        ));
        assert!(matches!(
            sqlstate_cause("28000", "m"),
            Some(Cause::Authentication(_))
        ));
        assert!(matches!(
            sqlstate_cause("42P01", "m"),
            Some(Cause::MissingTables(_))
        ));
        assert_eq!(sqlstate_cause("23505", "duplicate key"), None);
        let line = describe(
            "Postgres",
            Some(PG),
            &Cause::MissingDatabase("database \"x\" does not exist".into()),
            &sqlx::Error::PoolClosed,
        );
        assert!(line.contains("`stopcaster migrate`"), "{line}");
    }

    #[test]
    fn other_errors_keep_their_words_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading list.txt: {0}")]
        struct Read(#[source] io::Error);
        let e = Read(io::Error::new(io::ErrorKind::NotFound, "No such file"));
        assert_eq!(
            one_line(&e, &Targets::default()),
            "reading list.txt: No such file"
        );
        // A cause not already in its outer message is kept.
        #[derive(Debug, thiserror::Error)]
        #[error("binding 127.0.0.1:80")]
        struct Bind(#[source] io::Error);
        let e = Bind(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "Permission denied",
        ));
        assert_eq!(chain_once(&e), "binding 127.0.0.1:80: Permission denied");
        // A broker error that is not about connecting: the command's words, then the server.
        let amqp = lapin::protocol::AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
            "NOT_FOUND - no queue 'p.dead'".into(),
        );
        let e = BrokerError::Amqp(lapin::Error::from(lapin::ErrorKind::ProtocolError(amqp)));
        let line = one_line(&e, &targets());
        assert_eq!(
            line.matches("NOT_FOUND - no queue").count(),
            1,
            "once: {line}"
        );
        assert!(
            line.ends_with("(RabbitMQ at amqp://guest@127.0.0.1:5672/%2f)"),
            "{line}"
        );
    }
}
