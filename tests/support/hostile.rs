//! A hostile HTTP proxy for tests: it stands in front of a real server
//! (a `docker-registry`, or the token server) on 127.0.0.1 and misbehaves
//! the way a hostile registry may, on the requests it is told to:
//!
//! * **dribble**: send the response headers at once, then the body one
//!   byte per pause (a slow registry; a long pause is a stalled one);
//! * **huge body**: answer with a body of N bytes instead of the real one
//!   (a 100 MB "manifest"), announcing its length or not;
//! * **header rewrites**: replace strings in every response's headers (a
//!   `Docker-Content-Digest` that lies, a token realm sent elsewhere);
//! * **failures**: answer the first N matching requests with an error
//!   status (503, 429…), to show that the client retries what is worth
//!   retrying.
//!
//! Everything else passes through unchanged. It is bounded in time: every
//! connection thread stops at the next byte once the proxy is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the proxy misbehaves.
#[derive(Clone, Default)]
pub struct Hostility {
    /// Requests whose request line contains this are tampered with
    /// (dribble, huge body); empty means none.
    pub matching: String,
    /// Send the matching responses' bodies one byte per this pause.
    pub dribble: Option<Duration>,
    /// Answer matching requests with a body of this many bytes; the bool
    /// says whether a `Content-Length` announces it.
    pub huge_body: Option<(u64, bool)>,
    /// `(from, to)` replacements in every response's headers.
    pub header_rewrites: Vec<(String, String)>,
    /// Answer the first N matching requests with this status line
    /// (e.g. "503 Service Unavailable") and an empty body.
    pub fail_first: Option<(usize, &'static str)>,
}

pub struct HostileProxy {
    pub port: u16,
    /// How many requests were tampered with.
    pub tampered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileProxy {
    /// Proxies to `127.0.0.1:upstream`, misbehaving as `hostility` says.
    pub fn start(upstream: u16, hostility: Hostility) -> HostileProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tampered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let hostility = Arc::new(hostility);
        let thread = {
            let (tampered, stop) = (tampered.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let (tampered, stop, hostility) =
                                (tampered.clone(), stop.clone(), hostility.clone());
                            std::thread::spawn(move || {
                                serve(client, upstream, &hostility, &tampered, &stop)
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        HostileProxy {
            port,
            tampered,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: one request (we answer `Connection: close`).
fn serve(
    client: TcpStream,
    upstream: u16,
    hostility: &Hostility,
    tampered: &AtomicUsize,
    stop: &AtomicBool,
) {
    let _ = client.set_write_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let end = line == "\r\n";
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
        if end {
            break;
        }
    }
    let mut client = client;
    let matches = !hostility.matching.is_empty() && head[0].contains(&hostility.matching);
    let earlier = if matches {
        tampered.fetch_add(1, Ordering::SeqCst)
    } else {
        0
    };
    if let (true, Some((failures, status))) = (matches, hostility.fail_first) {
        if earlier < failures {
            let _ = write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
    }
    if let (true, Some((size, announce))) = (matches, hostility.huge_body) {
        let length = if announce {
            format!("Content-Length: {size}\r\n")
        } else {
            String::new()
        };
        let _ = write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{length}Connection: close\r\n\r\n"
        );
        let chunk = vec![b' '; 64 << 10];
        let mut sent = 0u64;
        while sent < size && !stop.load(Ordering::Relaxed) {
            let n = chunk.len().min((size - sent) as usize);
            if client.write_all(&chunk[..n]).is_err() {
                return; // the client stopped reading: good
            }
            sent += n as u64;
        }
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let last = head.len() - 1;
    head.insert(last, "Connection: close\r\n".into());
    let _ = server.write_all(head.concat().as_bytes());
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let (response_head, body) = response.split_at(split);
    let mut response_head = String::from_utf8_lossy(response_head).into_owned();
    for (from, to) in &hostility.header_rewrites {
        response_head = response_head.replace(from, to);
    }
    if client.write_all(response_head.as_bytes()).is_err() {
        return;
    }
    match (matches, hostility.dribble) {
        (true, Some(pause)) => {
            for byte in body {
                if stop.load(Ordering::Relaxed) || client.write_all(&[*byte]).is_err() {
                    return;
                }
                let _ = client.flush();
                // Sleep in small steps, so that a dropped proxy stops soon.
                let mut left = pause;
                while !left.is_zero() && !stop.load(Ordering::Relaxed) {
                    let step = left.min(Duration::from_millis(50));
                    std::thread::sleep(step);
                    left -= step;
                }
            }
        }
        _ => {
            let _ = client.write_all(body);
        }
    }
}
