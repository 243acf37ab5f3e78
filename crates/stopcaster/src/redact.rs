//! What of a setting may be shown: a connection URL without its password, for error messages
//! and the worker's start-up line. Pure text handling, no parsing library: it must cope with
//! whatever an operator typed, including URLs the drivers would refuse.

/// `url` with the password of its user info and any `password=` query parameter taken out:
/// `amqp://guest:guest@host:5672/%2f` becomes `amqp://guest@host:5672/%2f`. A comma-separated
/// list of URLs (`AMQP_URL` naming a cluster's nodes) loses every password; a comma that does
/// not start another `scheme://` stays inside its URL (a Postgres password may hold one).
pub(crate) fn url_without_password(url: &str) -> String {
    list_items(url)
        .into_iter()
        .map(one_url_without_password)
        .collect::<Vec<_>>()
        .join(",")
}

/// The URLs of a comma-separated list: split at each comma followed by a scheme and `://`.
fn list_items(list: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    for (i, _) in list.match_indices(',') {
        if starts_with_scheme(list[i + 1..].trim_start()) {
            items.push(&list[start..i]);
            start = i + 1;
        }
    }
    items.push(&list[start..]);
    items
}

fn starts_with_scheme(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

fn one_url_without_password(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The last '@' ends the user info: a password may itself contain '@' when not escaped.
    let authority = match authority.rfind('@') {
        Some(at) => {
            let user_info = &authority[..at];
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{user}@{}", &authority[at + 1..])
        }
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{}", without_password_parameter(tail))
}

/// The path-and-query part with `password=...` parameters removed (libpq-style URLs may carry
/// the password there).
fn without_password_parameter(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !key.eq_ignore_ascii_case("password")
        })
        .collect();
    let mut out = path.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_taken_out() {
        assert_eq!(
            url_without_password("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            url_without_password("postgres://root:p@ss@db:5432/x?sslmode=require"),
            "postgres://root@db:5432/x?sslmode=require"
        );
        assert_eq!(
            url_without_password("postgres://db/x?password=hunter2&sslmode=disable"),
            "postgres://db/x?sslmode=disable"
        );
        assert_eq!(
            url_without_password("postgres://db/x?PASSWORD=hunter2"),
            "postgres://db/x"
        );
        assert_eq!(
            url_without_password("postgres://127.0.0.1/stopcaster"),
            "postgres://127.0.0.1/stopcaster"
        );
        assert_eq!(url_without_password("not a url"), "not a url");
        assert_eq!(url_without_password("amqp://u:secret@h"), "amqp://u@h");
    }

    #[test]
    fn every_node_of_a_list_loses_its_password() {
        assert_eq!(
            url_without_password("amqp://u:s1@r0:5672/%2f,amqp://u:s2@r1/%2f, amqps://u:s3@r2"),
            "amqp://u@r0:5672/%2f,amqp://u@r1/%2f, amqps://u@r2"
        );
        // A comma inside a password does not start another URL.
        assert_eq!(
            url_without_password("postgres://root:a,b@db/x"),
            "postgres://root@db/x"
        );
    }
}
