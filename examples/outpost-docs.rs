//! Writes the man pages and shell completions for the packages, from the same clap definitions
//! the binary parses with, so they cannot drift from the CLI:
//!
//! ```sh
//! cargo run --example outpost-docs -- OUTDIR
//! ```
//!
//! gives `OUTDIR/man/outpost.1`, one `outpost-<command>.1` per subcommand (`outpost-config-check.1`
//! for nested ones), and `OUTDIR/completions/{outpost.bash,_outpost,outpost.fish}`. Kept out of the
//! gateway binary on purpose: it would carry two generators for files the package already ships.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: cargo run --example outpost-docs -- OUTDIR");
        std::process::exit(64);
    };
    let cmd = outpost::cli::Cli::command();
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let mut pages = Vec::new();
    write_pages(&cmd, "outpost", &man, &mut pages)?;
    // The main page also says what the flags cannot: exit codes, files, environment.
    let mut main = std::fs::OpenOptions::new().append(true).open(man.join("outpost.1"))?;
    main.write_all(TRAILER.as_bytes())?;
    let see_also: Vec<String> = pages.iter().skip(1).map(|p| format!(".BR {p} (1)")).collect();
    writeln!(main, ".SH \"SEE ALSO\"\n{},\n.BR systemctl (1),\n.BR journalctl (1)", see_also.join(",\n"))?;

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = outpost::cli::Cli::command();
        clap_complete::generate_to(shell, &mut cmd, "outpost", &completions)?;
    }
    Ok(())
}

/// One page for the command and one per subcommand, named the way `man outpost-queue-retry`
/// looks them up.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, pages: &mut Vec<String>) -> std::io::Result<()> {
    // A leaked name: clap keeps `&'static str` names, and this process writes a few pages and ends.
    let static_name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let page = cmd.clone().name(static_name).bin_name(name.replace('-', " "));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)?;
    pages.push(name.to_string());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, pages)?;
    }
    Ok(())
}

const TRAILER: &str = r#".SH "EXIT STATUS"
Every command exits with a code from sysexits:
.TP
.B 0
done (\-\-help and \-\-version too)
.TP
.B 64
bad usage (an unknown command or flag) or a config that does not check
.TP
.B 65
bad data: a message file that is not HL7, a negative ACK to \fBsend\fR, a request the daemon refused
.TP
.B 66
an input file missing or unreadable
.TP
.B 69
the daemon or a peer is unavailable (not running, no connection, no ACK in time)
.TP
.B 70
an internal error
.TP
.B 76
a peer answered something that is not an HL7 ACK
.SH FILES
.TP
.I /etc/outpost/outpost.toml
The configuration (every key in /usr/share/doc/outpost/config.md). \fBoutpost init\fR writes a
starter; \fBoutpost config check\fR checks it; \fBsystemctl reload outpost\fR applies it.
Remote configuration from central replaces it atomically and keeps
.IR outpost.toml.last-good .
.TP
.I /var/lib/outpost/
The journal (SQLite): every item taken, until delivered and acknowledged. Kept when the
package is purged.
.TP
.I /run/outpost/control.sock
The control socket the CLI talks to; open to members of group \fBoutpost\fR.
.SH ENVIRONMENT
.TP
.B OUTPOST_CONFIG
The config file the commands use when \-\-config is not given.
.TP
.B OUTPOST_SOCKET
The control socket to talk to (overrides the config's).
.TP
.B OUTPOST_LOG
The log filter (as RUST_LOG): \fBinfo\fR by default; \fBdebug\fR logs a line per item (ids
and types only, never content).
"#;
