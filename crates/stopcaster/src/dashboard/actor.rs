//! Who did something through the dashboard, as it is logged and recorded: the basic-auth user
//! name (whatever the caller typed, so made harmless: escaped as every displayed value is, the
//! length capped) and the client's address.

use std::fmt;
use std::net::IpAddr;

use crate::domain::display;

/// The most characters of a user name kept (escapes included).
pub(crate) const MAX_USER_CHARS: usize = 64;

/// A user name and an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Actor {
    /// Sanitised ([`sanitise_user`]); `anonymous` when none was given.
    pub user: String,
    pub address: IpAddr,
}

impl Actor {
    pub(crate) fn new(user: Option<&str>, address: IpAddr) -> Self {
        let user = user
            .filter(|u| !u.is_empty())
            .map_or_else(|| "anonymous".to_owned(), sanitise_user);
        Actor { user, address }
    }
}

impl fmt::Display for Actor {
    /// `user@dashboard (address)`, as `cancelled_by` records it (`stopcaster cancel` writes
    /// `user@host`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@dashboard ({})", self.user, self.address)
    }
}

/// A user name made safe to log and store: in the escaped form every displayed value takes
/// ([`crate::domain::display`]), at most [`MAX_USER_CHARS`] characters, then the length marker.
pub(crate) fn sanitise_user(name: &str) -> String {
    display::bounded(name, MAX_USER_CHARS).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_characters_are_escaped() {
        assert_eq!(sanitise_user("alice"), "alice");
        assert_eq!(
            sanitise_user("a\u{1b}]0;pwned\u{7}b"),
            "a\\x1b]0;pwned\\x07b"
        );
        assert_eq!(sanitise_user("x\ny\rz\u{0}"), "x\\x0ay\\x0dz\\x00");
        assert_eq!(sanitise_user("cas-\u{202e}gnp.exe"), "cas-\\u{202e}gnp.exe");
        assert_eq!(sanitise_user("a\u{2066}b\u{feff}"), "a\\u{2066}b\\u{feff}");
        assert_eq!(sanitise_user("a\\u{1b}"), "a\\\\u{1b}");
        assert_eq!(sanitise_user("Zoë 山田"), "Zoë 山田");
    }

    #[test]
    fn the_length_is_capped() {
        let long = "é".repeat(1000);
        let s = sanitise_user(&long);
        assert!(s.starts_with(&"é".repeat(MAX_USER_CHARS)), "{s}");
        assert!(s.ends_with("… (1,000 chars)"), "{s}");
        // An escape is never cut in half.
        let s = sanitise_user(&format!("{}\u{1b}", "a".repeat(62)));
        assert_eq!(s, format!("{}… (63 chars)", "a".repeat(62)));
        assert_eq!(sanitise_user(&"b".repeat(64)), "b".repeat(64));
    }

    #[test]
    fn who_and_from_where() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            Actor::new(Some("ops\u{1b}"), ip).to_string(),
            "ops\\x1b@dashboard (192.0.2.7)"
        );
        assert_eq!(Actor::new(Some(""), ip).user, "anonymous");
        assert_eq!(Actor::new(None, ip).user, "anonymous");
    }
}
