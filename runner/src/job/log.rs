//! The job log: one file per job, one line per event, each stamped with the
//! UTC time and its stream (`daemon`, `stdout`, `stderr`). The build's pipes
//! are read in chunks and split on newlines (overlong lines are cut at 16 KiB,
//! and a pipe waits while [`MAX_IN_FLIGHT`] of its lines are not yet written,
//! so a hostile build cannot make the daemon buffer without bound). The log
//! is closed before attestation and its sha256 goes into provenance as a
//! byproduct.
//!
//! The file is capped (the job's log limit, 64 MiB by default): once it
//! reaches the cap, the build's output is read and discarded (the build goes
//! on, never blocked on a full pipe), a line says so, and the log ends with
//! a line counting what was discarded. The daemon's own lines are always
//! written (a handful per job), so the file ends a few lines past the cap at
//! most.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

const MAX_LINE: usize = 16 * 1024;
/// Lines of a build's pipes queued for the writer at most (per log): the
/// pump stops reading the pipe meanwhile, so the build blocks on a full
/// pipe instead of growing the daemon's memory.
const MAX_IN_FLIGHT: usize = 1024;

/// A line for the writer; build output carries a permit of the log's
/// in-flight bound, released once the line is written.
type Message = (Stream, Vec<u8>, Option<OwnedSemaphorePermit>);

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Daemon,
    Stdout,
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Daemon => "daemon",
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A handle to write lines into a job's log (cheap to clone).
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<Message>,
    in_flight: Arc<Semaphore>,
}

impl LogSink {
    /// Writes one line (the trailing newline is added).
    pub fn line(&self, stream: Stream, text: impl AsRef<[u8]>) {
        // A closed log only happens after `finish`; late lines are dropped by design.
        let _ = self.tx.send((stream, text.as_ref().to_vec(), None));
    }

    /// Writes one line of a pipe once fewer than [`MAX_IN_FLIGHT`] of the
    /// pipes' lines wait for the writer.
    async fn piped_line(&self, stream: Stream, text: Vec<u8>) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return;
        };
        let _ = self.tx.send((stream, text, Some(permit)));
    }

    /// A daemon message.
    pub fn say(&self, text: impl AsRef<str>) {
        self.line(Stream::Daemon, text.as_ref());
    }

    /// Copies a pipe into the log line by line until EOF.
    pub async fn pump(self, stream: Stream, mut pipe: impl AsyncRead + Unpin) {
        let mut buf = vec![0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = pending.drain(..=pos).collect();
                line.pop();
                self.piped_line(stream, line).await;
            }
            while pending.len() >= MAX_LINE {
                let line: Vec<u8> = pending.drain(..MAX_LINE).collect();
                self.piped_line(stream, line).await;
            }
        }
        if !pending.is_empty() {
            self.piped_line(stream, pending).await;
        }
    }
}

/// What a closed log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// `sha256:<hex>` of the file.
    pub digest: String,
    /// Bytes of build output discarded after the cap (0 when none).
    pub dropped_bytes: u64,
}

/// The writer side, owning the file.
#[derive(Debug)]
pub struct JobLog {
    path: PathBuf,
    sink: LogSink,
    writer: tokio::task::JoinHandle<std::io::Result<u64>>,
}

/// One stamped line as the file holds it.
fn format_line(stream: Stream, text: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(text.len() + 40);
    line.extend_from_slice(super::store::now_rfc3339().as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.tag().as_bytes());
    line.extend_from_slice(b" | ");
    line.extend(
        text.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    line.push(b'\n');
    line
}

/// A size as people read it: `64 MiB`, `512 KiB`, else bytes.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Appends one daemon line to a job's log that no [`JobLog`] writes any
/// more (a job found interrupted at start; its log was never finished).
pub async fn append_daemon_line(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(&format_line(Stream::Daemon, text.as_bytes()))
        .await?;
    file.sync_all().await
}

/// Path of a job's log under the state dir.
pub fn log_path(state_dir: &Path, job_id: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{job_id}.log"))
}

impl JobLog {
    /// Creates the log file, capped at `limit` bytes (see the module
    /// comment), and starts its writer task.
    pub async fn create(path: PathBuf, limit: u64) -> std::io::Result<JobLog> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        // Buffered: a write to a tokio file is a trip to the blocking pool.
        let mut file = tokio::io::BufWriter::new(file);
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            let mut written = 0u64;
            let (mut dropped_bytes, mut dropped_lines) = (0u64, 0u64);
            while let Some((stream, text, permit)) = rx.recv().await {
                let line = format_line(stream, &text);
                let build_output = stream != Stream::Daemon;
                if build_output && written + line.len() as u64 > limit {
                    if dropped_lines == 0 {
                        let note = format_line(
                            Stream::Daemon,
                            format!(
                                "the log reached its {} cap: further build output is discarded (the build goes on)",
                                human(limit)
                            )
                            .as_bytes(),
                        );
                        file.write_all(&note).await?;
                        written += note.len() as u64;
                        file.flush().await?;
                    }
                    dropped_bytes += text.len() as u64 + 1;
                    dropped_lines += 1;
                    continue;
                }
                file.write_all(&line).await?;
                written += line.len() as u64;
                drop(permit);
                // Flush per batch so `logs --follow` sees lines promptly.
                if rx.is_empty() {
                    file.flush().await?;
                }
            }
            if dropped_lines > 0 {
                let note = format!(
                    "log truncated: {dropped_bytes} bytes ({dropped_lines} lines) of build output discarded after the {} cap",
                    human(limit)
                );
                file.write_all(&format_line(Stream::Daemon, note.as_bytes()))
                    .await?;
            }
            file.flush().await?;
            file.get_ref().sync_all().await?;
            Ok(dropped_bytes)
        });
        Ok(JobLog {
            path,
            sink: LogSink {
                tx,
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            },
            writer,
        })
    }

    /// A handle for writing.
    pub fn sink(&self) -> LogSink {
        self.sink.clone()
    }

    /// Closes the log (after every other sink is dropped) and returns its
    /// digest and how much build output the cap discarded.
    pub async fn finish(self) -> std::io::Result<Closed> {
        let JobLog { path, sink, writer } = self;
        drop(sink);
        let dropped_bytes = writer.await.map_err(std::io::Error::other)??;
        // Hashed as it is read: the file is up to the cap, not read whole.
        let mut file = tokio::fs::File::open(&path).await?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Closed {
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            dropped_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe is not read further while MAX_IN_FLIGHT of its lines wait for
    /// the writer (here: while every permit is held), and goes on once they
    /// are written.
    #[tokio::test]
    async fn a_pipe_waits_while_its_lines_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let log = JobLog::create(path.clone(), crate::config::DEFAULT_LOG_LIMIT)
            .await
            .unwrap();
        let sink = log.sink();
        let held = sink
            .in_flight
            .clone()
            .acquire_many_owned(MAX_IN_FLIGHT as u32)
            .await
            .unwrap();
        let (mut build, pipe) = tokio::io::duplex(64);
        let pump = tokio::spawn(sink.clone().pump(Stream::Stdout, pipe));
        // The build writes more than the pipe holds: it blocks, the pump
        // read the first line but cannot hand it over.
        let writes = tokio::spawn(async move {
            for i in 0..100 {
                build
                    .write_all(format!("line {i}\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!writes.is_finished(), "the build was never held up");
        assert!(!pump.is_finished());
        sink.say("still here");
        drop(held);
        writes.await.unwrap();
        pump.await.unwrap();
        drop(sink);
        log.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(" stdout | line "))
                .count(),
            100
        );
        assert!(text.contains(" daemon | still here"));
    }

    #[tokio::test]
    async fn lines_are_stamped_and_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let log = JobLog::create(path.clone(), crate::config::DEFAULT_LOG_LIMIT)
            .await
            .unwrap();
        log.sink().say("start");
        let input: &[u8] = b"one\ntwo\npartial";
        log.sink().pump(Stream::Stdout, input).await;
        let long = vec![b'x'; MAX_LINE + 10];
        log.sink().pump(Stream::Stderr, &long[..]).await;
        let closed = log.finish().await.unwrap();
        assert_eq!(closed.dropped_bytes, 0);
        let digest = closed.digest;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].ends_with(" daemon | start"));
        assert!(lines[1].ends_with(" stdout | one"));
        assert!(lines[3].ends_with(" stdout | partial"));
        assert_eq!(lines[4].len() - lines[4].find(" | ").unwrap() - 3, MAX_LINE);
        assert!(lines[0].starts_with("20") && lines[0].as_bytes()[10] == b'T');
        assert_eq!(
            digest,
            format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
        );
    }

    /// A build printing far past the cap: the log stops at the cap with a
    /// line saying so, the pipe is read to its end (the build was never held
    /// up), daemon lines still arrive, and the last line counts what was
    /// discarded.
    #[tokio::test]
    async fn output_past_the_cap_is_discarded_and_the_log_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let cap = 64 << 10;
        let log = JobLog::create(path.clone(), cap).await.unwrap();
        log.sink().say("start");
        // 4 MiB of output in 1 KiB lines, through a pipe the size of a
        // real one: it must drain although nothing more is written.
        let (mut build, pipe) = tokio::io::duplex(64 << 10);
        let pump = tokio::spawn(log.sink().pump(Stream::Stdout, pipe));
        let line = format!("{}\n", "y".repeat(1023));
        for _ in 0..4096 {
            build.write_all(line.as_bytes()).await.unwrap();
        }
        drop(build);
        pump.await.unwrap();
        log.sink().say("build finished");
        let closed = log.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let size = text.len() as u64;
        assert!(
            size > cap - 2048 && size < cap + 1024,
            "log is {size} bytes"
        );
        let lines: Vec<&str> = text.lines().collect();
        let cut = lines
            .iter()
            .position(|l| l.contains(" daemon | the log reached its 64 KiB cap: "))
            .expect("a line at the cut");
        assert!(lines[cut].contains("further build output is discarded (the build goes on)"));
        assert!(
            lines[cut + 1].ends_with(" daemon | build finished"),
            "{}",
            lines[cut + 1]
        );
        let last = lines.last().unwrap();
        assert!(last.contains(" daemon | log truncated: "), "{last}");
        let kept = lines.iter().filter(|l| l.contains(" stdout | ")).count() as u64;
        assert_eq!(closed.dropped_bytes, (4096 - kept) * 1024);
        assert!(last.contains(&format!(
            "{} bytes ({} lines)",
            closed.dropped_bytes,
            4096 - kept
        )));
        assert_eq!(
            closed.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
        );
    }
}
