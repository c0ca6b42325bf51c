//! The log writer: one event, one line, nothing a terminal would act on.
//!
//! Object keys, notification bodies and SQL come from outside and may hold line breaks and terminal
//! escapes; written as they are, a key like `x\n2025-03-03T10:00:00Z INFO committed` would forge a
//! log line in a text log, and `\x1b]...` would drive the terminal of whoever tails it.
//! tracing-subscriber's own sanitising does not reach every field (`key = %key` is written raw), so
//! this escapes every control character of an event but the tab and the line break that ends it.
//! That includes colour codes, so text logs are written without colours. (JSON logs escape control
//! characters anyway.)

use std::io::{self, Write};

/// Wraps a writer that receives one whole formatted event per `write` call, as
/// tracing-subscriber's fmt layer writes them.
#[derive(Debug)]
pub struct OneLine<W: Write>(pub W);

/// Whether `bytes` starting at `at` is a control character: C0 but the tab, DEL, or C1 (U+0080 to
/// U+009F, two bytes in UTF-8).
fn control_at(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes[at] {
        b'\t' => None,
        0x00..=0x1f | 0x7f => Some(1),
        0xc2 if bytes.get(at + 1).is_some_and(|b| (0x80..=0x9f).contains(b)) => Some(2),
        _ => None,
    }
}

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !(0..body.len()).any(|at| control_at(body, at).is_some()) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        let mut at = 0;
        while at < body.len() {
            match (control_at(body, at), body[at]) {
                (Some(_), b'\n') => line.extend_from_slice(b"\\n"),
                (Some(_), b'\r') => line.extend_from_slice(b"\\r"),
                (Some(1), b) => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                (Some(_), _) => line.extend_from_slice(format!("\\u{{{:x}}}", body[at + 1]).as_bytes()),
                (None, b) => line.push(b),
            }
            at += control_at(body, at).unwrap_or(1);
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
        // Terminal escapes (C0, DEL and C1) are written as text; tabs and other text stay.
        assert_eq!(
            written(&["k=\x1b]0;pwned\x07 \u{9b}31m \x7f\tüé\n"]),
            "k=\\x1b]0;pwned\\x07 \\u{9b}31m \\x7f\tüé\n"
        );
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
