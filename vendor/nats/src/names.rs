// osapi patch (5): the name rules and the credentials file's blocks, read by hand. Upstream compiled
// regular expressions for these four checks and the one parse; the regex crate (~220 KB of code in
// each binary) was linked for them alone.

/// A bucket's name: `\A[a-zA-Z0-9_-]+\z`.
pub(crate) fn is_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A key's (or an object's) characters: `\A[-/_=\.a-zA-Z0-9]+\z`.
pub(crate) fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.'))
}

/// The values of a credentials file's decorated blocks, in order: a value is a line of word
/// characters, `-`, `.` and `=` between two lines of dashes, as upstream's
/// `\s*(?:(?:[-]{3,}.*[-]{3,}\r?\n)([\w\-.=]+)(?:\r?\n[-]{3,}.*[-]{3,}\r?\n))` found them: the
/// opening line has three dashes or more from some point to its end (six at least in all), the
/// closing one the same from its start, each ends in a line feed (after at most one carriage
/// return), and the search goes on after a block's closing line. Word characters are Unicode letters,
/// digits and `_` (the regex's `\w` also took combining marks, which no JWT or seed holds).
pub(crate) fn decorated_blocks(contents: &str) -> Vec<&str> {
    // Each line with whether a line feed ends it.
    let lines: Vec<(&str, bool)> = {
        let mut parts: Vec<&str> = contents.split('\n').collect();
        let last = parts.pop().unwrap_or_default();
        let mut lines: Vec<(&str, bool)> = parts.into_iter().map(|l| (l, true)).collect();
        lines.push((last, false));
        lines
    };
    fn body(line: &str) -> &str {
        line.strip_suffix('\r').unwrap_or(line)
    }
    let dashes_to_end = |line: &str, from: usize| line.len() >= from + 6 && line.ends_with("---");
    let opens = |(line, ended): (&str, bool)| {
        let line = body(line);
        ended && line.find("---").is_some_and(|at| dashes_to_end(line, at))
    };
    let closes = |(line, ended): (&str, bool)| {
        let line = body(line);
        ended && line.starts_with("---") && dashes_to_end(line, 0)
    };
    fn value((line, ended): (&str, bool)) -> Option<&str> {
        let line = body(line);
        let ok = ended
            && !line.is_empty()
            && line
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '='));
        ok.then_some(line)
    }
    let mut found = Vec::new();
    let mut at = 0;
    while at + 2 < lines.len() {
        let block = (lines[at], lines[at + 1], lines[at + 2]);
        match (opens(block.0), value(block.1), closes(block.2)) {
            (true, Some(v), true) => {
                found.push(v);
                at += 3;
            }
            _ => at += 1,
        }
    }
    found
}

/// A server version's `MAJOR.MINOR.PATCH` (an optional leading `v`; each part its leading digits):
/// a part that is missing or has no digits counts as 0.
pub(crate) fn version_parts(version: &str) -> (i64, i64, i64) {
    let version = version.strip_prefix('v').unwrap_or(version);
    let mut parts = version.splitn(3, '.').map(|part| {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        part[..digits].parse::<i64>().unwrap_or(0)
    });
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJBQkMifQ.c2lnLW5vdC1yZWFs";
    const SEED: &str = "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM";

    fn creds(nl: &str) -> String {
        [
            "-----BEGIN NATS USER JWT-----",
            JWT,
            "------END NATS USER JWT------",
            "",
            "************************* IMPORTANT *************************",
            "NKEY Seed printed below can be used to sign and prove identity.",
            "NKEYs are sensitive and should be treated as secrets.",
            "",
            "-----BEGIN USER NKEY SEED-----",
            SEED,
            "------END USER NKEY SEED------",
            "",
        ]
        .join(nl)
    }

    #[test]
    fn a_creds_file_gives_its_jwt_then_its_seed() {
        assert_eq!(decorated_blocks(&creds("\n")), [JWT, SEED]);
        assert_eq!(decorated_blocks(&creds("\r\n")), [JWT, SEED]);
    }

    #[test]
    fn blocks_the_regex_did_not_find_are_not_found() {
        // The closing line must end in a line feed.
        let no_final_newline = creds("\n").trim_end().to_string();
        assert_eq!(decorated_blocks(&no_final_newline), [JWT]);
        // Fewer than six dashes, a value with a space, a closing line not starting with dashes.
        assert!(decorated_blocks("-----\nabc\n------\n").is_empty());
        assert!(decorated_blocks("---x---\na b\n---y---\n").is_empty());
        assert!(decorated_blocks("---x---\nabc\n x---y---\n").is_empty());
        // Two carriage returns are not one line end.
        assert!(decorated_blocks("---x---\r\r\nabc\n---y---\n").is_empty());
        assert!(decorated_blocks("").is_empty());
    }

    #[test]
    fn the_search_goes_on_where_the_regex_would() {
        // An opening line may begin anywhere; a failed opening is retried from the next line, whose
        // dashes are value characters too.
        assert_eq!(decorated_blocks("xx---a---\nv1\n---b---\n"), ["v1"]);
        assert_eq!(
            decorated_blocks("-----A-----\n-----B-----\nvalue\n-----C-----\n"),
            ["value"]
        );
        // After a block the search starts past its closing line.
        assert_eq!(
            decorated_blocks("---a---\nv1\n---b---\nv2\n---c---\n---d---\nv3\n---e---\n"),
            ["v1", "v3"]
        );
        // Three blocks back to back, = and . in values.
        assert_eq!(
            decorated_blocks("------\na.b=\n------\n------\nc_d-\n------\n"),
            ["a.b=", "c_d-"]
        );
    }

    #[test]
    fn versions_are_read_without_panicking() {
        assert_eq!(version_parts("2.9.10"), (2, 9, 10));
        assert_eq!(version_parts("v2.15.1"), (2, 15, 1));
        assert_eq!(version_parts("2.11.0-RC.1"), (2, 11, 0));
        assert_eq!(version_parts("2.10"), (2, 10, 0));
        assert_eq!(version_parts(""), (0, 0, 0));
        assert_eq!(version_parts("x.y"), (0, 0, 0));
        assert_eq!(version_parts("99999999999999999999.1.1"), (0, 1, 1));
    }

    #[test]
    fn names_follow_the_old_patterns() {
        for ok in ["a", "Z9", "osapi_jobs-1"] {
            assert!(is_bucket_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "a b", "é", "a/b", "a*"] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
        for ok in ["a", "jobs.1-2/x=_"] {
            assert!(is_key(ok), "{ok}");
        }
        for bad in ["", "a b", "a*", "a>", "ü", "a\n"] {
            assert!(!is_key(bad), "{bad}");
        }
    }
}
