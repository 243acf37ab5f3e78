//! The operators' actions as the audit trail records them (`stopcaster_audit`): what was done
//! ([`Action`]), through what ([`Source`]), by whom and from where, on what, how many, and how
//! it ended. Pure: the entry is built by the command or handler that acts and written by
//! `store::record_action`. Who and what may carry anything a person typed (a `--actor`, a
//! basic-auth user name, a reason, a filter): they are kept as typed but cut to a bounded
//! length ([`super::display::cut`]), and every reader escapes and bounds them again when it
//! shows them, as it does any value from a message.

use std::fmt;

use super::display;

/// The most characters of an actor or origin kept.
pub(crate) const ACTOR_CHARS: usize = 64;
/// The most characters of a target (ids or filter) or detail kept.
pub(crate) const TARGET_CHARS: usize = 1_000;

/// What an operator did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Enqueue,
    Cancel,
    Replay,
    Pause,
    Resume,
    Stop,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Enqueue => "enqueue",
            Action::Cancel => "cancel",
            Action::Replay => "replay",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
        }
    }
}

/// Through what the action came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A command: who is the OS user or `--actor`, where the host name.
    Cli,
    /// The dashboard: who is the basic-auth user name, where the client's address.
    Dashboard,
    /// `POST /api/...` with a bearer token: who is the token's name, where the client's address.
    // Recorded by the API's handlers through [`Who::api`].
    #[allow(dead_code)]
    Api,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Dashboard => "dashboard",
            Source::Api => "api",
        }
    }
}

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done as asked.
    Ok,
    /// Done in part (some ids unknown, some jobs already started): the detail says what.
    Partial(String),
    /// Refused or failed: the detail says why.
    Failed(String),
}

impl Outcome {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial(_) => "partial",
            Outcome::Failed(_) => "failed",
        }
    }

    pub(crate) fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Ok => None,
            Outcome::Partial(d) | Outcome::Failed(d) => Some(d),
        }
    }
}

/// Who acted and from where, made safe to store and show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Who {
    pub actor: String,
    pub source: Source,
    pub origin: String,
}

impl Who {
    /// `actor` and `origin` cut to [`ACTOR_CHARS`]; an empty actor is `anonymous`.
    pub(crate) fn new(actor: &str, source: Source, origin: &str) -> Self {
        let actor = if actor.is_empty() { "anonymous" } else { actor };
        Who {
            actor: clip(actor, ACTOR_CHARS),
            source,
            origin: clip(origin, ACTOR_CHARS),
        }
    }
}

impl Who {
    /// Who called the API: the bearer token's name (never the token), from the client's address.
    #[allow(dead_code)] // for `POST /api/jobs`'s handler, which records with `store::record_action`
    pub(crate) fn api(token_name: &str, client: std::net::IpAddr) -> Self {
        Who::new(token_name, Source::Api, &client.to_string())
    }
}

impl fmt::Display for Who {
    /// `actor via source (origin)`, escaped, as a log line shows who acted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {} ({})",
            display::bounded(&self.actor, ACTOR_CHARS),
            self.source.as_str(),
            display::bounded(&self.origin, ACTOR_CHARS)
        )
    }
}

/// One action, ready to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub action: Action,
    pub who: Who,
    /// The ids or the filter acted on, cut to [`TARGET_CHARS`].
    pub target: String,
    /// How many jobs (or accounts) the action touched, where that is a number.
    pub count: Option<i64>,
    pub outcome: Outcome,
}

impl Entry {
    pub(crate) fn new(
        action: Action,
        who: &Who,
        target: &str,
        count: Option<usize>,
        outcome: Outcome,
    ) -> Self {
        let outcome = match outcome {
            Outcome::Ok => Outcome::Ok,
            Outcome::Partial(d) => Outcome::Partial(bound(&d)),
            Outcome::Failed(d) => Outcome::Failed(bound(&d)),
        };
        Entry {
            action,
            who: who.clone(),
            target: bound(target),
            count: count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            outcome,
        }
    }
}

fn bound(text: &str) -> String {
    clip(text, TARGET_CHARS)
}

/// `text` cut to `max` characters with the length marker, not escaped.
pub(crate) fn clip(text: &str, max: usize) -> String {
    display::cut(text, max).map_or_else(|| text.to_owned(), |(cut, _)| cut)
}

/// Ids as a target: the first few, then how many more (an audit row says what, not every id).
pub(crate) fn ids_target<T: fmt::Display>(prefix: &str, ids: &[T]) -> String {
    const SHOWN: usize = 20;
    let mut out = format!("{prefix}{}", ids.len());
    out.push_str(if ids.len() == 1 { " id: " } else { " ids: " });
    let shown: Vec<String> = ids.iter().take(SHOWN).map(ToString::to_string).collect();
    out.push_str(&shown.join(" "));
    if ids.len() > SHOWN {
        out.push_str(&format!(" … and {} more", ids.len() - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_bounded_kept_as_typed_and_shown_escaped() {
        let who = Who::new("ops\u{1b}]0;x\u{7}", Source::Dashboard, "192.0.2.7");
        assert_eq!(who.actor, "ops\u{1b}]0;x\u{7}");
        assert_eq!(
            who.to_string(),
            "ops\\x1b]0;x\\x07 via dashboard (192.0.2.7)"
        );
        let long = Who::new(&"é".repeat(500), Source::Cli, "h");
        assert_eq!(
            long.actor,
            format!("{}… (500 chars)", "é".repeat(ACTOR_CHARS))
        );
        assert_eq!(Who::new("", Source::Api, "a").actor, "anonymous");
        let api = Who::api("cron", "192.0.2.9".parse().unwrap());
        assert_eq!(
            (api.actor.as_str(), api.source, api.origin.as_str()),
            ("cron", Source::Api, "192.0.2.9")
        );
    }

    #[test]
    fn entries_bound_what_they_keep() {
        let who = Who::new("alice", Source::Cli, "host-1");
        let e = Entry::new(
            Action::Pause,
            &who,
            &format!("account x: {}", "r".repeat(5000)),
            None,
            Outcome::Failed("bad\u{202e}".into()),
        );
        assert!(e.target.ends_with("chars)"), "{}", e.target);
        assert_eq!(e.outcome.detail(), Some("bad\u{202e}"));
        assert_eq!(e.outcome.as_str(), "failed");
    }

    #[test]
    fn ids_are_listed_up_to_a_point() {
        assert_eq!(ids_target("", &[1]), "1 id: 1");
        let many: Vec<u32> = (0..25).collect();
        let t = ids_target("jobs ", &many);
        assert!(t.starts_with("jobs 25 ids: 0 1 2"), "{t}");
        assert!(t.ends_with("19 … and 5 more"), "{t}");
    }
}
