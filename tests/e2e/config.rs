//! `outpost config check` and `outpost run` on valid and invalid config files.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A valid config: one source, two destinations, one route.
fn valid(state_dir: &Path) -> String {
    format!(
        r#"[node]
site = "test"
id = "gw"
state_dir = "{}"

[control]
socket = "{}"

[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:0"

[[destination]]
name = "lis"
kind = "mllp"
connect = "127.0.0.1:6661"

[[destination]]
name = "archive"
kind = "file"
dir = "archive"

[[route]]
name = "all"
from = ["ehr"]
to = ["lis", "archive"]
"#,
        state_dir.display(),
        state_dir.join("control.sock").display()
    )
}

const SECOND_EHR: &str = "[[source]]\nname = \"ehr\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:2576\"\n\n[[destination]]";

fn with_unknown_key(text: &str) -> String {
    text.replacen("kind = \"mllp\"\nlisten", "kind = \"mllp\"\ncolour = \"blue\"\nlisten", 1)
}

fn with_unknown_destination(text: &str) -> String {
    text.replace("to = [\"lis\", \"archive\"]", "to = [\"lis\", \"archiv\"]")
}

fn with_duplicate_source(text: &str) -> String {
    text.replacen("[[destination]]", SECOND_EHR, 1)
}

fn with_bad_listen(text: &str) -> String {
    text.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:99999\"")
}

/// An error expected at the `nth` (from 0) line containing `line_has`, at the column where
/// `at` starts in that line, for `key`, with a message containing `says`.
struct Expected {
    line_has: &'static str,
    nth: usize,
    at: &'static str,
    key: &'static str,
    says: &'static str,
}

const UNKNOWN_KEY: Expected =
    Expected { line_has: "colour = ", nth: 0, at: "colour", key: "source[0].colour", says: "unknown key \"colour\"" };
const UNKNOWN_DESTINATION: Expected = Expected {
    line_has: "to = [",
    nth: 0,
    at: "\"archiv\"",
    key: "route[0].to[1]",
    says: "there is no destination named \"archiv\"",
};
const DUPLICATE_SOURCE: Expected = Expected {
    line_has: "name = \"ehr\"",
    nth: 1,
    at: "\"ehr\"",
    key: "source[1].name",
    says: "the source name \"ehr\" is already used by source[0]",
};
const BAD_LISTEN: Expected = Expected {
    line_has: "listen = \"127.0.0.1:99999\"",
    nth: 0,
    at: "\"127.0.0.1:99999\"",
    key: "source[0].listen",
    says: "is not an address",
};

impl Expected {
    /// `FILE:LINE:COL: KEY: ` for this error in `text` stored at `path`.
    fn prefix(&self, text: &str, path: &Path) -> (usize, String) {
        let (index, line) = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(self.line_has))
            .nth(self.nth)
            .unwrap_or_else(|| panic!("test config has no line with {:?}:\n{text}", self.line_has));
        let column = line[..line.find(self.at).unwrap()].chars().count() + 1;
        (index + 1, format!("{}:{}:{}: {}: ", path.display(), index + 1, column, self.key))
    }

    /// Asserts the error is in `stderr`, once, placed right; returns its line in the file.
    fn assert_in(&self, stderr: &str, text: &str, path: &Path) -> usize {
        let (line, prefix) = self.prefix(text, path);
        let found: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(found.len(), 1, "expected one error starting {prefix:?}; got:\n{stderr}");
        assert!(found[0].contains(self.says), "{:?} should say {:?}", found[0], self.says);
        line
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(path: &Path) -> std::process::Output {
    output_within(outpost_command(&["config", "check", path.to_str().unwrap()]), DEADLINE)
}

/// Checks a file with one error and asserts the documented answer.
fn assert_single_error(text: &str, expected: &Expected) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "outpost.toml", text);
    let out = check(&path);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(64), "stdout:\n{}\nstderr:\n{stderr}", stdout_of(&out));
    expected.assert_in(&stderr, text, &path);
    assert!(stderr.ends_with("1 error(s); nothing was changed.\n"), "{stderr}");
    assert_eq!(stdout_of(&out), "", "nothing on stdout for an invalid file");
}

#[test]
fn config_check_accepts_a_valid_file_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "outpost.toml", &valid(dir.path()));
    let out = check(&path);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.starts_with(&format!("{}: valid. ", path.display())), "{text}");
    assert!(text.contains("1 source(s), 2 destination(s), 1 route(s)"), "{text}");
    assert!(text.contains("routing mode all-matches"), "{text}");
    assert!(text.contains(&dir.path().join("journal.db").display().to_string()), "{text}");
    assert!(!dir.path().join("journal.db").exists(), "config check opens no journal");
}

#[test]
fn config_check_points_at_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_single_error(&with_unknown_key(&valid(dir.path())), &UNKNOWN_KEY);
}

#[test]
fn config_check_points_at_a_route_naming_an_unknown_destination() {
    let dir = tempfile::tempdir().unwrap();
    assert_single_error(&with_unknown_destination(&valid(dir.path())), &UNKNOWN_DESTINATION);
}

#[test]
fn config_check_points_at_a_duplicate_source_name() {
    let dir = tempfile::tempdir().unwrap();
    assert_single_error(&with_duplicate_source(&valid(dir.path())), &DUPLICATE_SOURCE);
}

#[test]
fn config_check_points_at_a_bad_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    assert_single_error(&with_bad_listen(&valid(dir.path())), &BAD_LISTEN);
}

#[test]
fn config_check_reports_every_error_at_once_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        with_bad_listen(&with_duplicate_source(&with_unknown_destination(&with_unknown_key(&valid(dir.path())))));
    let path = write(dir.path(), "outpost.toml", &text);
    let out = check(&path);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let lines: Vec<usize> = [&UNKNOWN_KEY, &BAD_LISTEN, &DUPLICATE_SOURCE, &UNKNOWN_DESTINATION]
        .iter()
        .map(|e| e.assert_in(&stderr, &text, &path))
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "test setup: expectations in file order: {lines:?}");
    let reported: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&format!("{}:", path.display()))).collect();
    assert_eq!(reported.len(), 4, "exactly the four errors:\n{stderr}");
    let reported_lines: Vec<usize> = reported.iter().map(|l| l.split(':').nth(1).unwrap().parse().unwrap()).collect();
    let mut sorted = reported_lines.clone();
    sorted.sort();
    assert_eq!(reported_lines, sorted, "in file order:\n{stderr}");
    assert!(stderr.ends_with("4 error(s); nothing was changed.\n"), "{stderr}");
}

#[test]
fn run_with_an_invalid_config_exits_64_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_unknown_destination(&valid(dir.path()));
    let path = write(dir.path(), "bad.toml", &text);
    let mut cmd = outpost_command(&["run", "--config", path.to_str().unwrap()]);
    // The errors are printed plainly; with logging on, the log line repeats them.
    cmd.env("OUTPOST_LOG", "off");
    let out = output_within(cmd, DEADLINE);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    UNKNOWN_DESTINATION.assert_in(&stderr, &text, &path);
    assert!(!dir.path().join("control.sock").exists(), "no control socket was created");
    assert!(!dir.path().join("journal.db").exists(), "no journal was opened");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/outpost.toml");
    let out = check(&example);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains(": valid. 1 source(s), 3 destination(s), 5 route(s)"), "{text}");
    assert!(text.contains("routing mode all-matches"), "{text}");
}
