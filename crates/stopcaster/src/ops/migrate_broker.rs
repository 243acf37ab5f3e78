//! `stopcaster migrate --broker`: moves the queues an older version declared to the current
//! arguments ([`crate::broker::migrate_broker`]) and says, per queue, what it did.

use std::io::Write;

use crate::broker::{self, MigrateError, MigrateReport, QueueMigration};
use crate::config::BrokerArgs;

/// Connects, migrates, and prints one line per queue.
pub async fn run(args: &BrokerArgs, out: &mut dyn Write) -> Result<MigrateReport, MigrateError> {
    let names = broker::Names::new(&args.queue_prefix);
    let connection = broker::connect(&args.amqp_url, "stopcaster migrate --broker").await?;
    let report = broker::migrate_broker(&connection, &names).await?;
    for queue in &report.queues {
        writeln!(out, "{}", line(queue))?;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(report)
}

fn line(queue: &QueueMigration) -> String {
    match (queue.migrated, queue.messages) {
        (true, n) => format!(
            "{}: moved to the current arguments, {n} message(s) kept",
            queue.queue
        ),
        (false, 0) => format!("{}: already current", queue.queue),
        (false, n) => format!(
            "{}: already current; {n} message(s) moved back from {}.migrating (an interrupted run)",
            queue.queue, queue.queue
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(migrated: bool, messages: u64) -> QueueMigration {
        QueueMigration {
            queue: "p.dead".into(),
            migrated,
            messages,
        }
    }

    #[test]
    fn each_line_says_what_became_of_the_queue() {
        assert_eq!(
            line(&queue(true, 3)),
            "p.dead: moved to the current arguments, 3 message(s) kept"
        );
        assert_eq!(line(&queue(false, 0)), "p.dead: already current");
        assert!(line(&queue(false, 2)).contains("2 message(s) moved back from p.dead.migrating"));
    }
}
