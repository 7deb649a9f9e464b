//! Two jobs, two cores: one thread decompresses a layer while another
//! creates its files.
//!
//! Unpacking a layer is two kinds of work. Turning the gzip stream back
//! into a tar keeps a CPU busy in our own code; creating thousands of files
//! keeps one busy in the kernel. Done one after the other, they add up.
//! `tar -xzf` already runs them side by side: tar starts `gzip -d` as a
//! second process and reads its output through a pipe. We do the same with
//! a second thread and a channel:
//!
//! ```text
//!  blob ──► [gunzip thread] gunzip ──► chunks ──► [this thread] sha256, tar ──► files
//! ```
//!
//! The sha256 of the uncompressed tar (the diff ID check) is computed on
//! this side: decompressing is the heavier job, so hashing here shares the
//! work between the two cores more evenly.
//!
//! The channel is bounded (a few chunks in flight): a fast decompressor
//! waits for a slow disk instead of filling memory with the whole layer.
//!
//! One rule matters more than speed: a process that later forks into new
//! namespaces must be single-threaded then (`unshare` refuses otherwise;
//! see chapter 3). So the thread lives inside [`std::thread::scope`], which
//! joins it before [`apply_layer_blob`] returns, on success, on error, and
//! even if the unpack panics.

use crate::layer_store::HashingReader;
use crate::unpack::{apply_layer, Applied, Mode};
use ch01_images::archive::open_layer;
use ch01_images::digest::Digest;
use ch01_images::error::{Error, Result};
use ch01_images::manifest::Descriptor;
use ch01_images::store::Store;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

/// Bytes of uncompressed tar handed over at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks the gunzip thread may be ahead of the unpack (here, 2 MiB).
const CHUNKS_IN_FLIGHT: usize = 8;

// ANCHOR: apply_layer_blob
/// Applies the layer blob `layer` of `store` to `root` (see
/// [`apply_layer`]), decompressing it in a second thread. Returns what was
/// applied and the sha256 of the uncompressed tar: the caller compares it
/// with the layer's diff ID.
pub fn apply_layer_blob(
    store: &Store,
    layer: &Descriptor,
    root: &Path,
    mode: Mode,
) -> Result<(Applied, Digest)> {
    let (chunks, received) = sync_channel(CHUNKS_IN_FLIGHT);
    thread::scope(|scope| {
        let gunzip = thread::Builder::new()
            .name("gunzip".into())
            .spawn_scoped(scope, move || decompress_into(store, layer, chunks))
            .map_err(|e| Error::new(format!("starting the gunzip thread: {e}")))?;
        let mut stream = HashingReader::new(ChunkReader::new(received));
        let applied = apply_layer(&mut stream, root, mode);
        // `digest` consumes the stream, and with it the receiving end of the
        // channel: if the unpack stopped early, the gunzip thread's next send
        // fails and it ends, so the join below never waits forever.
        let digest = stream.digest();
        let gunzipped = gunzip
            .join()
            .unwrap_or_else(|_| Err(Error::new("the gunzip thread panicked")));
        // The unpack's error first: it names the entry, or says the stream
        // is damaged. If it succeeded, the stream ended where the tar did;
        // then only the gunzip thread can have failed (e.g. opening the blob).
        let applied = applied?;
        gunzipped?;
        Ok((applied, digest))
    })
}
// ANCHOR_END: apply_layer_blob

/// The gunzip thread: reads the blob, decompressed, and sends it on in
/// chunks. A read error is sent too, for the unpack to report.
fn decompress_into(
    store: &Store,
    layer: &Descriptor,
    chunks: SyncSender<io::Result<Vec<u8>>>,
) -> Result<()> {
    let mut stream = open_layer(store, layer)?;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let filled = match fill(&mut stream, &mut chunk) {
            Ok(filled) => filled,
            Err(e) => {
                let message = format!("reading layer {}: {e}", layer.digest);
                let _ = chunks.send(Err(e));
                return Err(Error::new(message));
            }
        };
        if filled == 0 {
            return Ok(()); // the end; dropping `chunks` tells the unpack
        }
        chunk.truncate(filled);
        if chunks.send(Ok(chunk)).is_err() {
            return Err(Error::new("the unpack stopped before the end of the layer"));
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The unpack's side of the channel: a plain [`Read`] of the tar stream.
struct ChunkReader {
    chunks: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    fn new(chunks: Receiver<io::Result<Vec<u8>>>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => (self.current, self.at) = (chunk, 0),
                Ok(Err(e)) => return Err(e),
                // The sender is gone: the gunzip thread is done (or failed,
                // which the join reports). Either way, the stream ends here.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_back_as_one_stream_and_errors_come_through() {
        let (send, receive) = sync_channel(4);
        send.send(Ok(b"hello ".to_vec())).unwrap();
        send.send(Ok(Vec::new())).unwrap();
        send.send(Ok(b"world".to_vec())).unwrap();
        drop(send);
        let mut text = String::new();
        ChunkReader::new(receive).read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world");

        let (send, receive) = sync_channel(4);
        send.send(Ok(b"partial".to_vec())).unwrap();
        send.send(Err(io::Error::other("corrupt deflate stream")))
            .unwrap();
        let mut reader = ChunkReader::new(receive);
        let mut bytes = Vec::new();
        let err = reader.read_to_end(&mut bytes).unwrap_err();
        assert!(err.to_string().contains("corrupt"));
    }
}
