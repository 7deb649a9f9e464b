//! Real `docker-registry` (Debian's distribution 2.8) servers for tests,
//! on a free 127.0.0.1 port, with a temporary config: open, with an
//! htpasswd file (Basic auth), or in token mode (Bearer auth, with the
//! token server of [`crate::registry::TokenServer`]).

use crate::TempDir;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How clients must authenticate to a test registry.
pub enum RegistryAuth {
    None,
    /// Basic auth with this user and password (an htpasswd file is made).
    Basic {
        user: String,
        password: String,
    },
    /// Bearer tokens from a token server run by the test.
    Token {
        user: Option<(String, String)>,
    },
}

/// A running registry; stopped and cleaned when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: TempDir,
    pub token_server: Option<TokenServer>,
}

/// A free port on 127.0.0.1 (bound, then released for the registry).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Serves `storage` read-only (the fixtures are shared by many tests).
    pub fn serve_fixtures(storage: &Path) -> Registry {
        Registry::start(storage, true, RegistryAuth::None)
    }

    pub fn start(storage: &Path, readonly: bool, auth: RegistryAuth) -> Registry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            storage.display()
        );
        if readonly {
            config.push_str("  maintenance:\n    readonly:\n      enabled: true\n    uploadpurging:\n      enabled: false\n");
        }
        config.push_str(&format!("http:\n  addr: 127.0.0.1:{port}\n"));
        let mut token_server = None;
        match auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { user, password } => {
                let htpasswd = dir.join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", &user, &password])
                    .output()
                    .expect("htpasswd (apache2-utils)");
                assert!(out.status.success());
                std::fs::write(&htpasswd, out.stdout).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: crabbox-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            RegistryAuth::Token { user } => {
                let server = TokenServer::start(dir.path(), user);
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: crabbox-test-registry\n    issuer: crabbox-test-issuer\n    rootcertbundle: {}\n",
                    server.port,
                    server.cert.display()
                ));
                token_server = Some(server);
            }
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log);
        // If the test process dies, the registry dies with it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("start docker-registry (Debian package docker-registry)");
        let mut registry = Registry {
            child,
            port,
            _dir: dir,
            token_server,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self._dir.join("registry.log")).unwrap_or_default();
                panic!("docker-registry exited ({status}):\n{log}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("docker-registry did not start on port {}", self.port);
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the registry now (to prove a command needs no registry).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A token server in the style of Docker Hub's auth.docker.io: it answers
/// `GET /token?service=…&scope=…` with a JWT signed by a key whose
/// certificate the registry trusts (signing is done by `openssl`).
pub struct TokenServer {
    pub port: u16,
    cert: PathBuf,
    /// Every request line it received, for tests to inspect.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(dir: &Path, user: Option<(String, String)>) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=crabbox-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl x509");
        let x5c = base64(&der.stdout, true);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            serve_token(stream, &key, &x5c, user.as_ref(), &requests);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TokenServer {
            port,
            cert,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_token(
    stream: TcpStream,
    key: &Path,
    x5c: &str,
    user: Option<&(String, String)>,
    requests: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line
            .strip_prefix("Authorization: ")
            .or_else(|| line.strip_prefix("authorization: "))
        {
            authorization = Some(v.trim().to_string());
        }
    }
    requests.lock().unwrap().push(format!(
        "{} auth={}",
        request_line.trim(),
        authorization
            .as_deref()
            .map_or("none", |a| a.split(' ').next().unwrap_or(""))
    ));
    let mut stream = stream;
    if let Some((u, p)) = user {
        let expected = format!("Basic {}", base64(format!("{u}:{p}").as_bytes(), true));
        if authorization.as_deref() != Some(expected.as_str()) {
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(percent_decode)
            .unwrap_or_default()
    };
    let scope = param("scope");
    // scope = repository:NAME:pull[,push]
    let access: Vec<serde_json::Value> = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let (rest, actions) = s.rsplit_once(':')?;
            let (kind, name) = rest.split_once(':')?;
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "crabbox-test-issuer", "sub": user.map(|u| u.0.clone()).unwrap_or_default(),
        "aud": param("service"), "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", requests.lock().unwrap().len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let mut signature = Vec::new();
    openssl
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut signature)
        .unwrap();
    openssl.wait().unwrap();
    let token = format!("{signing_input}.{}", base64url(&signature));
    let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn base64(input: &[u8], pad: bool) -> String {
    let encoded = ch01_images::auth::base64_encode(input);
    if pad {
        encoded
    } else {
        encoded.trim_end_matches('=').to_string()
    }
}

fn base64url(input: &[u8]) -> String {
    base64(input, false).replace('+', "-").replace('/', "_")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
