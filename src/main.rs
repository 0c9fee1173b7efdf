fn main() -> std::process::ExitCode {
    // The CLI's output may go into `head` or `less`, which close the pipe early: end quietly
    // then, as other command-line tools do, rather than panic on the next write. (The Rust
    // runtime ignores SIGPIPE; the daemon's writes go to sockets, which report EPIPE as an
    // error the daemon handles, and it keeps the runtime's choice.)
    if std::env::args().nth(1).as_deref() != Some("run") {
        restore_sigpipe();
    }
    outpost::cli::main()
}

#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to its default, before any other thread exists.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
}
