//! `minitls admin clients|drop ID|say ID TEXT|stop --control SOCKET`: one command to a
//! running server's control socket (`serve --control`), its answer on stdout.

use minitls::control;

use super::args::{AdminCommand, ControlArgs};
use super::error::{CliError, CliResult, exit, out};

pub fn run(cmd: &AdminCommand) -> CliResult<()> {
    let (control, line) = match cmd {
        AdminCommand::Clients(a) => (
            &a.control,
            if a.json { "clients --json" } else { "clients" }.to_string(),
        ),
        AdminCommand::Drop(a) => (&a.control, format!("drop {}", a.id)),
        AdminCommand::Say(a) => {
            let text = a.text.join(" ");
            control::check_say_text(&text).map_err(CliError::usage)?;
            if text.contains(['\n', '\r']) {
                return Err(CliError::usage(
                    "a message is one line; remove the line breaks",
                ));
            }
            (&a.control, format!("say {} {text}", a.id))
        }
        AdminCommand::Stop(c) => (c, "stop".to_string()),
    };
    for l in send(control, &line)? {
        out(&l)?;
    }
    Ok(())
}

/// Sends `line` and returns the answer's lines; the server's refusal is an error (status 1),
/// a socket that cannot be reached status 3.
fn send(c: &ControlArgs, line: &str) -> CliResult<Vec<String>> {
    let path = c.control.display();
    match control::send_command(&c.control, line) {
        Ok(Ok(lines)) => Ok(lines),
        Ok(Err(e)) => Err(CliError::new(format!("{path}: {e}"))),
        Err(e) => {
            let fix = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "; is `minitls serve --control SOCKET` running with this SOCKET?"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "; only the user the server runs as may use its control socket"
                }
                _ => "",
            };
            Err(CliError::with_code(
                exit::UNREACHABLE,
                format!("cannot reach the control socket {path}: {e}{fix}"),
            ))
        }
    }
}
