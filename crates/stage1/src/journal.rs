//! Apps' output to the systemd journal, when the host runs journald (its
//! socket exists): one datagram per line in journald's native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>), with the pod and app
//! as fields, so `journalctl SKIFF_POD_UUID=<uuid>` finds them
//! (docs/logs.md). Sending never waits: a journal that cannot keep up
//! loses lines, counted and said once (the pod's log files keep them).

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use skiff_pod::logs::Stream;

/// Where journald listens for native messages.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// A connection to the journal for one pod's apps.
pub struct Journal {
    socket: UnixDatagram,
    uuid: String,
    /// Lines the journal did not take.
    pub dropped: u64,
}

/// Appends field `name` with `value` in the native protocol: `NAME=value`
/// on a line, or the binary-safe form for a value holding a newline.
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The datagram for one line of `app`'s output.
pub fn message(uuid: &str, app: &str, stream: Stream, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 160);
    field(&mut out, "MESSAGE", line);
    // info for stdout, err for stderr, as journald's stdout streams do.
    let priority = match stream {
        Stream::Stdout => b"6",
        Stream::Stderr => b"3",
    };
    field(&mut out, "PRIORITY", priority);
    // Marked as skiff's: an image cannot pass for a host service (an app
    // named `sshd` logs as `skiff-sshd`).
    field(
        &mut out,
        "SYSLOG_IDENTIFIER",
        format!("skiff-{app}").as_bytes(),
    );
    field(&mut out, "SKIFF_POD_UUID", uuid.as_bytes());
    field(&mut out, "SKIFF_APP", app.as_bytes());
    field(&mut out, "SKIFF_STREAM", stream.as_str().as_bytes());
    out
}

impl Journal {
    /// The journal, if this host runs journald.
    pub fn connect(uuid: &str) -> Option<Journal> {
        if !Path::new(SOCKET).exists() {
            return None;
        }
        let socket = UnixDatagram::unbound().ok()?;
        socket.connect(SOCKET).ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Journal {
            socket,
            uuid: uuid.to_string(),
            dropped: 0,
        })
    }

    /// Sends one line of `app`'s output; counts it as dropped if the
    /// journal does not take it at once.
    pub fn send(&mut self, app: &str, stream: Stream, line: &[u8]) {
        let message = message(&self.uuid, app, stream, line);
        if self.socket.send(&message).is_err() {
            self.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_a_newline_take_the_binary_form() {
        let mut out = Vec::new();
        field(&mut out, "A", b"plain");
        field(&mut out, "B", b"two\nlines");
        let mut want = b"A=plain\nB\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(out, want);
    }

    #[test]
    fn a_message_names_the_pod_the_app_and_the_stream() {
        let text = String::from_utf8(message("u-1", "web", Stream::Stderr, b"oops")).unwrap();
        assert_eq!(
            text,
            "MESSAGE=oops\nPRIORITY=3\nSYSLOG_IDENTIFIER=skiff-web\nSKIFF_POD_UUID=u-1\nSKIFF_APP=web\nSKIFF_STREAM=stderr\n"
        );
    }
}
