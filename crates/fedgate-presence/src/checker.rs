//! The logic of the `map` example: `--from FAMILY --to FAMILY STATE [STATUS]`.
//!
//! ```
//! let out = fedgate_presence::checker::run(["--from", "lync", "--to", "xmpp-local", "Do Not Disturb"]);
//! assert_eq!(out.unwrap(), "Away \"Busy\"");
//! ```

use crate::model::{Availability, Family};
use crate::tables::{self, StatusRule};

/// The usage line printed on a bad command line.
pub const USAGE: &str = "usage: map --from FAMILY --to FAMILY [--travel] STATE [STATUS]\n  \
FAMILY: lync xmpp-local jabber xmpp-fed jabber-fed sametime webex\n  \
STATE:  Available Idle Busy \"Do Not Disturb\" \"Be Right Back\" Away \"Extended Away\" Offline\n  \
--travel: status text the table does not mention travels (default: the tables as written)";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Source family.
    pub from: Family,
    /// Target family.
    pub to: Family,
    /// Source state.
    pub state: Availability,
    /// Source status text.
    pub status: Option<String>,
    /// Which status rule to apply.
    pub rule: StatusRule,
}

/// Parse the arguments (without the program name).
pub fn parse_args<I, S>(args: I) -> Result<Query, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut from = None;
    let mut to = None;
    let mut rule = StatusRule::Tables;
    let mut positional: Vec<String> = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let arg = arg.as_ref();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        match flag {
            "--from" | "--to" => {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .map(|v| v.as_ref().to_owned())
                        .ok_or_else(|| format!("{flag} needs a FAMILY"))?,
                };
                let fam: Family = v.parse().map_err(|e| format!("{e}"))?;
                if flag == "--from" {
                    from = Some(fam);
                } else {
                    to = Some(fam);
                }
            }
            "--travel" => rule = StatusRule::Travel,
            "--" => positional.extend(it.by_ref().map(|a| a.as_ref().to_owned())),
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            _ => positional.push(arg.to_owned()),
        }
    }
    let from = from.ok_or("missing --from")?;
    let to = to.ok_or("missing --to")?;
    let mut positional = positional.into_iter();
    let state = positional
        .next()
        .ok_or("missing STATE")?
        .parse::<Availability>()
        .map_err(|e| e.to_string())?;
    let status = positional.next();
    if let Some(extra) = positional.next() {
        return Err(format!(
            "unexpected argument {extra:?} (quote multi-word states)"
        ));
    }
    Ok(Query {
        from,
        to,
        state,
        status,
        rule,
    })
}

/// The checker's answer: `Away "Busy"`, `Available`, or `unmapped`.
pub fn answer(q: &Query) -> String {
    match tables::map_with(q.rule, q.from, q.to, q.state, q.status.as_deref()) {
        None => "unmapped".to_owned(),
        Some(m) => match m.status {
            Some(s) => format!("{} \"{}\"", m.availability, s),
            None => m.availability.to_string(),
        },
    }
}

/// Parse and answer; `Err` carries the message for a bad command line.
pub fn run<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    parse_args(args).map(|q| answer(&q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let r = |a: &[&str]| run(a.iter().copied());
        assert_eq!(
            r(&["--from", "lync", "--to", "xmpp-local", "Busy"]).unwrap(),
            "Away \"Busy\""
        );
        assert_eq!(
            r(&["--from=jabber", "--to=lync", "Do Not Disturb"]).unwrap(),
            "Busy"
        );
        assert_eq!(
            r(&["--from", "sametime", "--to", "jabber", "Away", "Lunch"]).unwrap(),
            "Away \"Lunch\""
        );
        assert_eq!(
            r(&["--from", "sametime", "--to", "xmpp-local", "Away", "Lunch"]).unwrap(),
            "Away"
        );
        assert_eq!(
            r(&[
                "--from",
                "sametime",
                "--to",
                "xmpp-local",
                "--travel",
                "Away",
                "Lunch"
            ])
            .unwrap(),
            "Away \"Lunch\""
        );
        assert_eq!(
            r(&["--from", "sametime", "--to", "lync", "Away"]).unwrap(),
            "unmapped"
        );
        assert_eq!(
            r(&[
                "--to",
                "lync",
                "--from",
                "xmpp-local",
                "--",
                "Extended Away"
            ])
            .unwrap(),
            "Away"
        );
    }

    #[test]
    fn bad_command_lines() {
        let r = |a: &[&str]| run(a.iter().copied());
        assert!(r(&["--to", "lync", "Away"]).unwrap_err().contains("--from"));
        assert!(r(&["--from", "lync", "Away"]).unwrap_err().contains("--to"));
        assert!(
            r(&["--from", "lync", "--to", "jabber"])
                .unwrap_err()
                .contains("STATE")
        );
        assert!(
            r(&["--from", "msn", "--to", "jabber", "Away"])
                .unwrap_err()
                .contains("msn")
        );
        assert!(r(&["--from", "lync", "--to", "jabber", "Snoozing"]).is_err());
        assert!(r(&["--from", "lync", "--to", "jabber", "Do", "Not", "Disturb"]).is_err());
        assert!(r(&["--from", "lync", "--to", "jabber", "--bogus", "Away"]).is_err());
        assert!(r(&["--from"]).is_err());
    }
}
