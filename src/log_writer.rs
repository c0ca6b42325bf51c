//! The log writer: one event, one line, whatever the event's values hold.
//!
//! Object keys, notification bodies and SQL come from outside and may hold line breaks; written as
//! they are, a key like `x\n2025-03-03T10:00:00Z INFO committed` would forge a log line in a text
//! log. tracing-subscriber already escapes terminal control sequences (ESC, BEL, ...) in field
//! values; this escapes CR and LF inside an event, keeping only the line break that ends it. (JSON
//! logs escape both anyway.)

use std::io::{self, Write};

/// Wraps a writer that receives one whole formatted event per `write` call, as
/// tracing-subscriber's fmt layer writes them.
#[derive(Debug)]
pub struct OneLine<W: Write>(pub W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(b),
            }
        }
        if body.len() < buf.len() {
            line.push(b'\n');
        }
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(events: &[&str]) -> String {
        let mut out = OneLine(Vec::new());
        for event in events {
            out.write_all(event.as_bytes()).expect("write");
        }
        String::from_utf8(out.0).expect("utf-8")
    }

    #[test]
    fn line_breaks_inside_an_event_are_escaped_and_the_last_one_kept() {
        assert_eq!(written(&["INFO plain\n"]), "INFO plain\n");
        let forged = "WARN records rejected key=a\n2025-03-03T10:00:00Z INFO committed\r\n";
        assert_eq!(written(&[forged]), "WARN records rejected key=a\\n2025-03-03T10:00:00Z INFO committed\\r\n");
        assert_eq!(written(&["a\nb", "c\n"]), "a\\nbc\n");
        assert_eq!(written(&["INFO one\n", "INFO two\n"]).lines().count(), 2);
    }

    #[test]
    fn a_real_subscriber_writes_one_line_per_event() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let shared = Shared::default();
        let sink = shared.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || OneLine(sink.clone())).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, || {
            let key = "AWSLogs/x\n2025-03-03T10:00:00Z  INFO forged\x1b[31m.json.gz";
            tracing::warn!(key = %key, "object failed");
            tracing::info!("next");
        });
        let text = String::from_utf8(shared.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("AWSLogs/x\\n2025") && !text.contains('\x1b'), "{text}");
    }
}
