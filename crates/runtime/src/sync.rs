//! The create (or exec) process and the container's first process talk
//! over a socket pair, one JSON message a line. The parent treats what
//! arrives as hostile once the child may run container code: messages are
//! bounded and only these shapes are accepted.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use crate::{Result, RuntimeError, io_err};

/// The longest message accepted (an error line).
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Msg {
    /// The intermediate process made a user namespace: write its maps.
    UserNs,
    /// Parent: the maps are written (or the hooks ran); go on.
    Go,
    /// The container's first process, by its pid in the caller's pid
    /// namespace.
    Pid(i32),
    /// Init's environment is made: run the createRuntime hooks now.
    Hooks,
    /// Init is ready (created; waiting for start), or exec's process is
    /// about to exec.
    Ready,
    /// Setup failed.
    Error(String),
}

pub struct Channel {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// A connected pair (close-on-exec).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = UnixStream::pair().map_err(io_err("create the sync socket"))?;
    Ok((Channel::new(a)?, Channel::new(b)?))
}

impl Channel {
    fn new(s: UnixStream) -> Result<Channel> {
        let writer = s.try_clone().map_err(io_err("clone the sync socket"))?;
        Ok(Channel {
            reader: BufReader::new(s),
            writer,
        })
    }

    pub fn send(&mut self, msg: &Msg) -> Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(|e| RuntimeError::Io {
            what: "encode a sync message".into(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(io_err("talk to the container's process"))
    }

    /// The next message; `None` when the other side closed.
    pub fn recv(&mut self) -> Result<Option<Msg>> {
        let mut line = Vec::new();
        let mut limited = (&mut self.reader).take(MAX_LINE as u64 + 1);
        use std::io::Read;
        let n = limited
            .read_until(b'\n', &mut line)
            .map_err(io_err("hear from the container's process"))?;
        if n == 0 {
            return Ok(None);
        }
        if line.len() > MAX_LINE || line.last() != Some(&b'\n') {
            return Err(RuntimeError::Init(
                "the container's process sent a malformed message".into(),
            ));
        }
        serde_json::from_slice(&line).map(Some).map_err(|_| {
            RuntimeError::Init("the container's process sent a malformed message".into())
        })
    }

    /// Waits for `Go` (anything else is an error).
    pub fn wait_go(&mut self) -> Result<()> {
        match self.recv()? {
            Some(Msg::Go) => Ok(()),
            Some(Msg::Error(e)) => Err(RuntimeError::Init(e)),
            _ => Err(RuntimeError::Init("the runtime went away".into())),
        }
    }
}
