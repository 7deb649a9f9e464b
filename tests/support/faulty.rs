//! A fault-injecting HTTP proxy for tests: it stands in front of a real
//! registry and answers the first N blob requests with an error status
//! (503, 429…), passing everything else through unchanged. It shows that
//! the client retries what is worth retrying.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FaultyProxy {
    pub port: u16,
    /// How many requests were answered with the injected failure.
    pub injected: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultyProxy {
    /// Proxies to `127.0.0.1:upstream`, failing the first `failures` blob
    /// requests with `status` (e.g. "503 Service Unavailable").
    pub fn start(upstream: u16, failures: usize, status: &'static str) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let injected = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (injected, stop) = (injected.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let (injected, status) = (injected.clone(), status);
                            std::thread::spawn(move || {
                                serve(client, upstream, failures, status, &injected)
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FaultyProxy {
            port,
            injected,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: one request (we answer `Connection: close`).
fn serve(client: TcpStream, upstream: u16, failures: usize, status: &str, injected: &AtomicUsize) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let end = line == "\r\n";
        // Each request gets its own upstream connection.
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
        if end {
            break;
        }
    }
    let mut client = client;
    if head[0].contains("/blobs/") && injected.fetch_add(1, Ordering::SeqCst) < failures {
        let _ = write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
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
    let _ = client.write_all(&response);
}
