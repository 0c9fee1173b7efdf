//! Value readers: each checks one value, reports what is wrong with it (with a fix), and returns
//! it typed. They know nothing of which table a value sits in, so any section can use them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use super::error::ConfigErrorKind;
use super::walk::{Checker, Tbl, Val, closest};
use crate::hl7::{Charset, FieldPath};

pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * KIB;
pub(super) const GIB: u64 = 1024 * MIB;

/// Durations above this are taken for typos (a missing unit, an extra zero).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

pub(super) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `"value"` as a string, or a wrong-type error.
pub(super) fn string(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    match v.value {
        DeValue::String(s) => Some(s.to_string()),
        _ => {
            v.wrong_type(ck, "a string in double quotes", "");
            None
        }
    }
}

pub(super) fn boolean(ck: &mut Checker, v: &Val<'_, '_>) -> Option<bool> {
    match v.value {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            v.wrong_type(ck, "true or false (without quotes)", "");
            None
        }
    }
}

/// Site and node ids end up in MQTT topics and file names: keep them plain.
pub(super) fn identifier(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let all_ok = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if s.is_empty() || s.len() > 64 || !first_ok || !all_ok {
        let suggestion: String = s
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
            .collect::<String>()
            .trim_matches(|c| c == '-' || c == '_')
            .to_string();
        let hint = if suggestion.is_empty() || suggestion.len() > 64 {
            String::new()
        } else {
            format!(", e.g. {suggestion:?}")
        };
        v.invalid(
            ck,
            format!(
                "{s:?} is not a valid id; use 1 to 64 lower-case letters, digits, '-' and '_', \
                 starting with a letter or digit{hint}"
            ),
        );
        return None;
    }
    Some(s)
}

/// Reads the `name` of each block and reports missing, malformed and repeated names. Returns
/// each block's name as written (even a malformed one, so that routes naming it do not pile up
/// "unknown" errors), or `None` where there is no usable name.
pub(super) fn names(ck: &mut Checker, tables: &[Tbl<'_, '_>], what: &str, example: &str) -> Vec<Option<String>> {
    let mut first_use: HashMap<String, (String, usize)> = HashMap::new();
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let Some(v) = t.val("name") else {
            t.missing(ck, "name", &format!("name = \"{example}\""));
            out.push(None);
            continue;
        };
        let Some(name) = string(ck, &v) else {
            out.push(None);
            continue;
        };
        if let Err(why) = check_name(&name) {
            v.invalid(ck, format!("{name:?} is not a usable {what} name: {why}"));
        }
        let (line, _) = ck.line_col(v.span.start);
        match first_use.get(&name) {
            Some((first_path, first_line)) => ck.report(
                ConfigErrorKind::Duplicate,
                &v.span,
                &v.path,
                format!(
                    "the {what} name {name:?} is already used by {first_path} on line \
                     {first_line}; give each {what} its own name"
                ),
            ),
            None => {
                first_use.insert(name.clone(), (t.path.clone(), line));
            }
        }
        out.push(Some(name));
    }
    out
}

/// The names given, once each, in file order.
pub(super) fn distinct(names: &[Option<String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names.iter().flatten() {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Names of sources, destinations and routes appear in logs, the CLI and MQTT topics.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty; give it a short name such as \"lab-lis\"".to_string());
    }
    if name.chars().count() > 64 {
        return Err("it is longer than 64 characters; shorten it".to_string());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("it contains {c:?}; use only letters, digits, '-', '_' and '.', e.g. \"lab-lis\""));
    }
    Ok(())
}

pub(super) fn kind_of(what: &'static str, kinds: &[&str]) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<String> {
    move |ck, v| {
        let s = string(ck, v)?;
        if kinds.contains(&s.as_str()) {
            return Some(s);
        }
        let near = closest(&s, kinds.iter().copied()).map(|k| format!("did you mean {k:?}? ")).unwrap_or_default();
        ck.report(
            ConfigErrorKind::UnknownKind,
            &v.span,
            &v.path,
            format!("unknown {what} kind {s:?}; {near}the known kinds are: {}", kinds.join(", ")),
        );
        None
    }
}

pub(super) fn choice<T: Copy>(
    options: &[(&'static str, T)],
    what: &'static str,
) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<T> {
    move |ck, v| {
        let s = string(ck, v)?;
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let list: Vec<String> = options.iter().map(|(name, _)| format!("{name:?}")).collect();
        let near =
            closest(&s, options.iter().map(|(n, _)| *n)).map(|k| format!("did you mean {k:?}? ")).unwrap_or_default();
        v.invalid(ck, format!("unknown {what} {s:?}; {near}write {}", list.join(" or ")));
        None
    }
}

/// A path as written; callers join relative paths onto the state directory.
pub(super) fn path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<PathBuf> {
    let s = string(ck, v)?;
    if s.trim().is_empty() {
        v.invalid(
            ck,
            "the path is empty; write a file or directory path, or remove the key to use the \
             default"
                .to_string(),
        );
        return None;
    }
    if s.starts_with('~') {
        v.invalid(
            ck,
            format!(
                "{s:?} starts with ~, which outpost does not expand; write the full path, e.g. \
                 \"/home/...\", or a path relative to state_dir"
            ),
        );
        return None;
    }
    Some(PathBuf::from(s))
}

pub(super) fn absolute_path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<PathBuf> {
    let p = path(ck, v)?;
    if !p.is_absolute() {
        v.invalid(
            ck,
            format!(
                "{:?} is relative; state_dir must be an absolute path such as \
                 \"/var/lib/outpost\" (other relative paths are resolved against it)",
                p.display().to_string()
            ),
        );
        return None;
    }
    Some(p)
}

/// A whole number in `min..=max`.
pub(super) fn count_in(min: u64, max: u64) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<u64> {
    move |ck, v| {
        let n = unsigned(ck, v)?;
        if n < min || n > max {
            let range = if max == u64::MAX { format!("at least {min}") } else { format!("from {min} to {max}") };
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{n} is out of range; write a whole number {range}"),
            );
            return None;
        }
        Some(n)
    }
}

fn unsigned(ck: &mut Checker, v: &Val<'_, '_>) -> Option<u64> {
    match v.value {
        DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                let message = if i.as_str().starts_with('-') {
                    format!("{i} is negative; write a whole number of 0 or more")
                } else {
                    format!("{i} is too large")
                };
                ck.report(ConfigErrorKind::OutOfRange, &v.span, &v.path, message);
                None
            }
        },
        DeValue::String(s) if s.trim().parse::<u64>().is_ok() => {
            v.wrong_type(ck, "a whole number", &format!("; write it without quotes: {}", s.trim()));
            None
        }
        _ => {
            v.wrong_type(ck, "a whole number", "");
            None
        }
    }
}

/// `high_water`: a fraction in (0, 1].
pub(super) fn fraction(ck: &mut Checker, v: &Val<'_, '_>) -> Option<f64> {
    let x = match v.value {
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
        _ => None,
    };
    let Some(x) = x else {
        v.wrong_type(ck, "a fraction such as 0.8", "");
        return None;
    };
    if !(x > 0.0 && x <= 1.0) {
        ck.report(
            ConfigErrorKind::OutOfRange,
            &v.span,
            &v.path,
            format!("{x} is out of range; write a fraction above 0 and at most 1, e.g. 0.8 for 80%"),
        );
        return None;
    }
    Some(x)
}

/// A Unix file mode: a TOML integer (`0o660`) or an octal string (`"0660"`), at most 0o777.
pub(super) fn file_mode(ck: &mut Checker, v: &Val<'_, '_>) -> Option<u32> {
    const HOW: &str = "write it as an octal literal, e.g. 0o660, or a string, e.g. \"0660\"";
    let (mode, decimal) = match v.value {
        DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => (n, (i.radix() == 10).then(|| i.as_str().to_string())),
            Err(_) => {
                ck.report(ConfigErrorKind::OutOfRange, &v.span, &v.path, format!("{i} is not a file mode; {HOW}"));
                return None;
            }
        },
        DeValue::String(s) => {
            let digits = s.trim().strip_prefix("0o").unwrap_or(s.trim());
            if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                v.invalid(ck, format!("{s:?} is not an octal file mode; {HOW}"));
                return None;
            }
            (u64::from_str_radix(digits, 8).ok()?, None)
        }
        _ => {
            v.wrong_type(ck, "a file mode", &format!("; {HOW}"));
            return None;
        }
    };
    if mode > 0o777 {
        let message = match decimal {
            Some(d) if d.bytes().all(|b| (b'0'..=b'7').contains(&b)) => format!(
                "{d} is read as a decimal number (0o{mode:o}), above the largest mode 0o777; \
                 write the octal literal 0o{d} or the string \"0{d}\""
            ),
            _ => format!("0o{mode:o} is above the largest file mode 0o777; {HOW}"),
        };
        ck.report(ConfigErrorKind::OutOfRange, &v.span, &v.path, message);
        return None;
    }
    Some(mode as u32)
}

pub(super) fn duration(allow_zero: bool) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<Duration> {
    move |ck, v| {
        let s = match v.value {
            DeValue::String(s) => s,
            DeValue::Integer(i) => {
                v.wrong_type(
                    ck,
                    "a duration",
                    &format!("; durations need a unit: write \"{i}s\" for seconds, \"{i}m\" for minutes"),
                );
                return None;
            }
            _ => {
                v.wrong_type(ck, "a duration such as \"30s\"", "");
                return None;
            }
        };
        let d = match parse_duration(s) {
            Ok(d) => d,
            Err(why) => {
                v.invalid(
                    ck,
                    format!(
                        "{s:?} is not a duration: {why}; write it like \"500ms\", \"30s\", \
                         \"5m\", \"1h30m\" or \"7d\""
                    ),
                );
                return None;
            }
        };
        if d.is_zero() && !allow_zero {
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{s:?} is zero, which is not allowed here; write a duration above zero, e.g. \"30s\""),
            );
            return None;
        }
        if d > MAX_DURATION {
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{s:?} is longer than 100 years; check the number and unit"),
            );
            return None;
        }
        Some(d)
    }
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"7d"` and sums such as `"1h30m"` or `"1h 30m"`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("it is empty".to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let (digits, after) = rest.split_at(digits_len);
        let n: u64 = digits.parse().map_err(|_| format!("{digits} is too large"))?;
        let after = after.trim_start();
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n.checked_mul(60).map(Duration::from_secs).ok_or("it is too long")?,
            "h" => n.checked_mul(3600).map(Duration::from_secs).ok_or("it is too long")?,
            "d" => n.checked_mul(86_400).map(Duration::from_secs).ok_or("it is too long")?,
            "" => return Err(format!("{n} has no unit (ms, s, m, h or d)")),
            other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
        };
        total = total.checked_add(part).ok_or("it is too long")?;
        rest = after.trim_start();
    }
    Ok(total)
}

pub(super) fn size_in(min: u64, max: u64) -> impl Fn(&mut Checker, &Val<'_, '_>) -> Option<u64> {
    move |ck, v| {
        let n = match v.value {
            DeValue::Integer(_) => unsigned(ck, v)?,
            DeValue::String(s) => match parse_size(s) {
                Ok(n) => n,
                Err(why) => {
                    v.invalid(
                        ck,
                        format!(
                            "{s:?} is not a size: {why}; write it like \"512KiB\", \"16MiB\", \
                             \"1GiB\" or \"10MB\", or as a whole number of bytes"
                        ),
                    );
                    return None;
                }
            },
            _ => {
                v.wrong_type(ck, "a size such as \"16MiB\" or a number of bytes", "");
                return None;
            }
        };
        if n < min || n > max {
            let written = ck.snippet(&v.span);
            let bound = if n < min {
                format!("below the minimum {}", format_size(min))
            } else {
                format!("above the maximum {}", format_size(max))
            };
            ck.report(
                ConfigErrorKind::OutOfRange,
                &v.span,
                &v.path,
                format!("{written} is {bound}; write a size from {} to {}", format_size(min), format_size(max)),
            );
            return None;
        }
        Some(n)
    }
}

/// Parses `"512KiB"`, `"16MiB"`, `"1GiB"`, `"10MB"`, `"1GB"`, `"100"` (bytes). Units are
/// case-insensitive; KiB/MiB/GiB/TiB count in 1024s, KB/MB/GB/TB in 1000s.
fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let digits_len = text.bytes().take_while(|b| b.is_ascii_digit() || *b == b'_').count();
    let (digits, unit) = text.split_at(digits_len);
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return Err("it does not start with a number".to_string());
    }
    let n: u64 = digits.parse().map_err(|_| format!("{digits} is too large"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => 1024 * GIB,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "k" | "m" | "g" | "t" => {
            return Err(format!(
                "{:?} is ambiguous; write {0:?}iB (1024s) or {0:?}B (1000s)",
                unit.trim().to_ascii_uppercase()
            ));
        }
        other => {
            return Err(format!("unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"));
        }
    };
    n.checked_mul(factor).ok_or_else(|| "it is too large".to_string())
}

fn format_size(n: u64) -> String {
    for (unit, size) in [("TiB", 1024 * GIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n} bytes")
}

pub(super) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `listen`: an IP address and port to bind. Port 0 (any free port) is allowed for tests.
pub(super) fn listen_address(ck: &mut Checker, v: &Val<'_, '_>) -> Option<SocketAddr> {
    let s = string(ck, v)?;
    match s.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let why = match s.trim().rsplit_once(':') {
                None => "it has no port".to_string(),
                Some((_, port)) if port.parse::<u16>().is_err() => {
                    format!("the port {port:?} is not a number from 1 to 65535")
                }
                Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
                    "an IPv6 address needs brackets, e.g. [::]:2575".to_string()
                }
                Some((host, _)) => format!(
                    "{host:?} is not an IP address (listen takes the IP of a local interface, \
                     or 0.0.0.0 for all of them; not a host name)"
                ),
            };
            v.invalid(ck, format!("{s:?} is not an address: {why}; write it as IP:PORT, e.g. 0.0.0.0:2575"));
            None
        }
    }
}

/// `connect`: `host:port` with a host name, an IPv4 address or a bracketed IPv6 address. Only
/// the form is checked; the name is resolved at connect time.
pub(super) fn host_port(ck: &mut Checker, v: &Val<'_, '_>) -> Option<String> {
    let s = string(ck, v)?;
    match check_host_port(&s) {
        Ok(()) => Some(s),
        Err(why) => {
            v.invalid(
                ck,
                format!(
                    "{s:?} is not a host and port: {why}; write it as HOST:PORT, e.g. \
                     10.0.0.7:6661 or lis.lab.local:6661"
                ),
            );
            None
        }
    }
}

pub(super) fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("it has no port".to_string());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("a '[' without ']'")?;
        return inner.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| format!("{inner:?} is not an IPv6 address"));
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, e.g. [fd00::7]:6661".to_string());
    }
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())) {
        return host.parse::<Ipv4Addr>().map(|_| ()).map_err(|_| format!("{host:?} is not an IPv4 address"));
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let trimmed: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    if host.len() > 253 || !trimmed.iter().all(label_ok) {
        return Err(format!("{host:?} is not a host name (letters, digits and '-', parts separated by dots)"));
    }
    Ok(())
}

pub(super) fn charset(ck: &mut Checker, v: &Val<'_, '_>) -> Option<Charset> {
    let s = string(ck, v)?;
    match Charset::from_label(&s) {
        Some(c) => Some(c),
        None => {
            v.invalid(
                ck,
                format!(
                    "{s:?} is not a character set outpost knows; use an HL7 name such as \
                     \"8859/1\", \"ASCII\" or \"UNICODE UTF-8\", or a label such as \
                     \"windows-1252\" (leave it out to follow each message's MSH-18)"
                ),
            );
            None
        }
    }
}

pub(super) fn field_path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<FieldPath> {
    let s = string(ck, v)?;
    match s.parse::<FieldPath>() {
        Ok(p) => Some(p),
        Err(why) => {
            v.invalid(ck, why);
            None
        }
    }
}

/// A field a transform writes: anything but MSH-1 and MSH-2, which hold the separators.
pub(super) fn writable_field_path(ck: &mut Checker, v: &Val<'_, '_>) -> Option<FieldPath> {
    let p = field_path(ck, v)?;
    if p.segment == "MSH" && p.field <= 2 {
        v.invalid(
            ck,
            format!(
                "{p} holds the message's separator characters and cannot be changed by a \
                 transform; pick another field"
            ),
        );
        return None;
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("2h", secs(7200)),
            ("7d", secs(7 * 86_400)),
            ("1h30m", secs(5400)),
            ("1h 30m", secs(5400)),
            ("1m30s500ms", Duration::from_millis(90_500)),
            ("0s", Duration::ZERO),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in ["", "30", "s", "30x", "1.5h", "-5s", "30 seconds"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("512KiB", 512 * 1024),
            ("16MiB", 16 << 20),
            ("1GiB", 1 << 30),
            ("1GB", 1_000_000_000),
            ("10MB", 10_000_000),
            ("100", 100),
            ("64 kib", 64 * 1024),
            ("1_000B", 1000),
        ];
        for (s, n) in ok {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for s in ["", "MiB", "16M", "1.5GiB", "10 parsecs"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }
}
