//! Parsers for the commands' arguments whose refusals are in words: `not-a-uuid is not a job
//! id (a UUID)` rather than a parser's `invalid character: found 'n' at 0`. clap prints the
//! message after naming the argument.

use uuid::Uuid;

use crate::domain::JobStatus;

/// A job id: a UUID.
pub(crate) fn job_id(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text.trim()).map_err(|_| format!("{text} is not a job id (a UUID)"))
}

/// A status of `caster_stop_jobs`.
pub(crate) fn status(text: &str) -> Result<JobStatus, String> {
    JobStatus::parse(text.trim()).ok_or_else(|| {
        let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("{text} is not a status: {}", in_words(&names))
    })
}

/// One of a [`clap::ValueEnum`]'s values (ignoring case); `noun` names what it is
/// ("a format").
pub(crate) fn choice<T: clap::ValueEnum + Clone + Send + Sync + 'static>(
    noun: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        T::from_str(text.trim(), true).map_err(|_| {
            let names: Vec<String> = T::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value())
                .map(|p| p.get_name().to_owned())
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            format!("{text} is not {noun}: {}", in_words(&names))
        })
    }
}

/// `a, b or c`.
fn in_words(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, clap::ValueEnum)]
    enum Shape {
        Round,
        Square,
        Flat,
    }

    #[test]
    fn refusals_are_in_words() {
        assert_eq!(
            job_id("not-a-uuid"),
            Err("not-a-uuid is not a job id (a UUID)".to_owned())
        );
        assert!(job_id("1b4e28ba-2fa1-11d2-883f-0016cb4c4dd6").is_ok());
        assert_eq!(
            status("done"),
            Err("done is not a status: scheduled, pending, succeeded, failed, rejected or cancelled".to_owned())
        );
        assert_eq!(status("failed"), Ok(JobStatus::Failed));
        let shape = choice::<Shape>("a shape");
        assert_eq!(shape("Square"), Ok(Shape::Square));
        assert_eq!(
            shape("oval"),
            Err("oval is not a shape: round, square or flat".to_owned())
        );
    }
}
