//! Small C programs that play the attacker inside a container: compiled
//! static in the test (`gcc -static`, so they need nothing from the
//! image), and loaded as one-layer images (`load` of a docker archive), so
//! no registry is involved.

use crate::layers::{docker_archive, LayerTar};
use crate::{workspace, Engine, TempDir};
use std::path::PathBuf;
use std::process::Command;

/// Compiles `tests/probes/NAME.c` into a static binary; returns its bytes.
pub fn compile(name: &str) -> Vec<u8> {
    let source: PathBuf = workspace().join("tests/probes").join(format!("{name}.c"));
    let out = TempDir::new("probe");
    let binary = out.join(name);
    let result = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("gcc runs (scripts/setup installs it)");
    assert!(
        result.status.success(),
        "gcc -static {}: {}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read(&binary).unwrap()
}

/// Loads into `engine` (binary `bin`) an image named `tag` whose one
/// layer holds each `(path, program)` as an executable file, plus the
/// directories a container expects (`/tmp`, `/etc`, `/proc`, `/dev`,
/// `/sys`) and an /etc/passwd with root and nobody.
pub fn load_image(engine: &Engine, bin: &str, tag: &str, programs: &[(&str, &[u8])]) {
    let mut layer = LayerTar::new()
        .dir("tmp", 0o1777)
        .dir("etc", 0o755)
        .dir("proc", 0o555)
        .dir("dev", 0o755)
        .dir("sys", 0o555)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file("etc/group", b"root:x:0:\nnobody:x:65534:\n");
    for (path, program) in programs {
        layer = layer.file_with_mode(path, program, 0o755);
    }
    let work = TempDir::new("probe-image");
    let archive = work.join("image.tar");
    std::fs::write(&archive, docker_archive(tag, &[layer.into_bytes()])).unwrap();
    engine
        .run(bin, &["load", "-i", archive.to_str().unwrap()])
        .ok();
}
