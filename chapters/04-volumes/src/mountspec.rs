//! What the command line asks for: docker's three ways of writing a mount,
//! parsed into one [`MountRequest`] each, with docker's rules and error
//! messages.
//!
//! ```text
//! -v /host/dir:/ctr[:ro]          a bind mount (a host directory)
//! -v ./rel:/ctr                   a bind mount of the caller's ./rel
//! -v data:/ctr[:ro,nocopy]        a named volume (made on first use)
//! -v /ctr                         an anonymous volume (a 64-hex name)
//! --mount type=bind,src=/h,dst=/c,readonly
//! --mount type=volume,src=data,dst=/c,volume-nocopy,volume-label=k=v
//! --mount type=tmpfs,dst=/c,tmpfs-size=64m,tmpfs-mode=1770
//! --tmpfs /ctr[:size=64m,mode=1777]
//! ```
//!
//! Nothing here touches the disk except to turn `./rel` into an absolute
//! path and to see whether a `--mount type=bind` source exists: every
//! request is checked before anything is created, so a typo makes nothing.

use ch01_images::error::{Error, Result};
use ch03_run::names::valid_name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The three kinds of mount docker knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A host path, mounted as it is.
    Bind,
    /// A directory the engine keeps under `ROOT/volumes/NAME/_data`.
    Volume,
    /// Memory: gone when the container stops.
    Tmpfs,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bind => "bind",
            Kind::Volume => "volume",
            Kind::Tmpfs => "tmpfs",
        }
    }
}

// ANCHOR: request
/// One mount, as asked for on the command line (or by the image's VOLUME).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRequest {
    pub kind: Option<Kind>,
    /// Bind: an absolute host path. Volume: its name (`None`: anonymous).
    pub source: Option<String>,
    /// An absolute path inside the container, cleaned (`/data`, never `/data/`).
    pub destination: String,
    pub readonly: bool,
    /// Volume: do not seed it with the image's content (`nocopy`).
    pub nocopy: bool,
    /// Bind with `-v`: a missing host path is created (`--mount` refuses it).
    pub create_source: bool,
    /// Volume: labels for a volume made by this mount (`volume-label=k=v`).
    pub labels: BTreeMap<String, String>,
    /// Tmpfs: mount(8) options (`size=…`, `mode=…`, `noexec`, …).
    pub tmpfs_options: Vec<String>,
    /// `-v`'s mode string as typed (`ro,z`), for `inspect`'s `Mode`.
    pub mode: String,
}
// ANCHOR_END: request

impl MountRequest {
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Volume)
    }
}

/// Lines printed once, to stderr, for options accepted but meaningless here.
pub type Warnings = Vec<String>;

/// `path` cleaned as Go's `filepath.Clean` does (docker compares mount
/// points this way): no `//`, no `.`, `..` folded, no trailing `/`.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A destination must be absolute and not `/` (the container's root is
/// the image's; a volume cannot replace it).
pub fn check_destination(destination: &str, kind: Kind) -> Result<String> {
    if !destination.starts_with('/') {
        return Err(Error::new(format!(
            "invalid mount config for type \"{}\": invalid mount path: '{destination}' mount path must be absolute — give the path inside the container, e.g. /data",
            kind.as_str()
        )));
    }
    let cleaned = clean(destination);
    if cleaned == "/" {
        return Err(Error::new(format!(
            "invalid mount config for type \"{}\": invalid specification: destination can't be '/' — mount it on a directory, e.g. /data",
            kind.as_str()
        )));
    }
    Ok(cleaned)
}

/// docker's message for a name that is not a volume name.
pub fn check_volume_name(name: &str) -> Result<()> {
    if valid_name(name) {
        return Ok(());
    }
    Err(Error::new(format!(
        "\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )))
}

/// `SRC` is a host path: absolute, or `./…`, `../…` (also `.` and `..`),
/// resolved against the caller's working directory (docker 23+).
fn host_path(source: &str) -> Option<Result<PathBuf>> {
    if source.starts_with('/') {
        return Some(Ok(PathBuf::from(clean(source))));
    }
    let relative =
        source == "." || source == ".." || source.starts_with("./") || source.starts_with("../");
    relative.then(|| {
        std::path::absolute(source)
            .map(|p| PathBuf::from(clean(&p.to_string_lossy())))
            .map_err(|e| Error::new(format!("-v {source}: {e}")))
    })
}

// ANCHOR: parse_volume
/// `-v SRC:DST[:OPTS]` or `-v DST`, docker's short syntax.
pub fn parse_volume(spec: &str, warnings: &mut Warnings) -> Result<MountRequest> {
    let invalid = || {
        Error::new(format!(
            "invalid volume specification: '{spec}' — use -v SOURCE:DESTINATION[:OPTIONS], e.g. -v data:/data or -v /host/dir:/data:ro"
        ))
    };
    if spec.is_empty() || spec.starts_with(':') {
        return Err(invalid());
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [destination] => (None, *destination, ""),
        [source, destination] => (Some(*source), *destination, ""),
        [source, destination, mode] => (Some(*source), *destination, *mode),
        _ => return Err(invalid()),
    };
    let mut request = MountRequest {
        mode: mode.to_string(),
        ..MountRequest::default()
    };
    match source {
        None => request.kind = Some(Kind::Volume),
        Some(source) => match host_path(source) {
            Some(path) => {
                request.kind = Some(Kind::Bind);
                request.source = Some(path?.to_string_lossy().into_owned());
                request.create_source = true;
            }
            None => {
                // The name is checked after the destination, as docker does.
                request.kind = Some(Kind::Volume);
                request.source = Some(source.to_string());
            }
        },
    }
    if destination.is_empty() {
        return Err(invalid());
    }
    request.destination = check_destination(destination, request.kind())?;
    if let (Kind::Volume, Some(name)) = (request.kind(), &request.source) {
        check_volume_name(name)?;
    }
    if !mode.is_empty() {
        apply_mode(&mut request, mode, spec, warnings)?;
    }
    Ok(request)
}

/// The `OPTS` of `-v`: `ro`/`rw`, `nocopy`, `z`/`Z`, a propagation mode.
fn apply_mode(
    request: &mut MountRequest,
    mode: &str,
    spec: &str,
    warnings: &mut Warnings,
) -> Result<()> {
    let (mut rw_seen, mut label_seen, mut propagation_seen, mut copy_seen) =
        (false, false, false, false);
    for option in mode.split(',') {
        let seen = match option {
            "ro" | "rw" => {
                request.readonly = option == "ro";
                &mut rw_seen
            }
            "nocopy" => {
                if request.kind() == Kind::Bind {
                    return Err(Error::new(format!(
                        "invalid mode: nocopy in '{spec}' — nocopy is for volumes: a bind mount is never seeded"
                    )));
                }
                request.nocopy = true;
                &mut copy_seen
            }
            "z" | "Z" => {
                warnings.push(format!(
                    "-v {spec}: '{option}' relabels for SELinux; there are no SELinux labels here, so it changes nothing"
                ));
                &mut label_seen
            }
            "rprivate" => &mut propagation_seen,
            "private" | "shared" | "rshared" | "slave" | "rslave" => {
                return Err(Error::new(format!(
                    "invalid mode: {option} in '{spec}' — only rprivate propagation (the default) is supported: leave the mode out"
                )))
            }
            // macOS consistency hints: meaningless on Linux, as for docker.
            "consistent" | "cached" | "delegated" => &mut label_seen,
            _ => {
                return Err(Error::new(format!(
                    "invalid mode: {option} in '{spec}' — use ro, rw, nocopy, z or Z"
                )))
            }
        };
        if *seen {
            return Err(Error::new(format!(
                "invalid mode: {mode} in '{spec}' — each kind of option at most once"
            )));
        }
        *seen = true;
    }
    Ok(())
}
// ANCHOR_END: parse_volume

/// Splits `--mount`'s value as Go's `encoding/csv` does (docker uses it):
/// fields separated by commas, a field in double quotes may hold commas,
/// and `""` inside quotes is one quote. `src="/a,b"` is quoted too.
pub fn split_csv(value: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if quoted {
        return Err(Error::new(format!(
            "invalid argument \"{value}\" for \"--mount\" flag: a quote is not closed"
        )));
    }
    fields.push(field);
    Ok(fields)
}

/// A boolean field: no value (`readonly`), or what Go's
/// `strconv.ParseBool` takes (`true|false|1|0|t|f`, any case).
fn parse_bool(key: &str, value: Option<&str>) -> Result<bool> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") | Some("t") => Ok(true),
        Some("false") | Some("0") | Some("f") => Ok(false),
        Some(other) => Err(Error::new(format!(
            "invalid value for {key}: {other} — use true or false"
        ))),
    }
}

/// A size with docker's units (`64m`, `64mb`, `64MiB`, `1g`, `1024`):
/// bytes, powers of 1024 as docker's `RAMInBytes`.
pub fn parse_size(value: &str) -> Result<u64> {
    let lower = value.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let lower = lower.strip_suffix('i').unwrap_or(lower);
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if multiplier > 0 && !digits.is_empty() => Ok(n.saturating_mul(multiplier)),
        _ => Err(Error::new(format!(
            "invalid size: '{value}' — a number of bytes, or with a unit: 64m, 1g"
        ))),
    }
}

/// An octal file mode (`1777`, `0750`).
fn parse_mode(value: &str) -> Result<u32> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            Error::new(format!(
                "invalid mode: '{value}' — an octal mode, e.g. 1777"
            ))
        })
}

// ANCHOR: parse_mount
/// `--mount type=…,source=…,target=…,…`, docker's long syntax. Unlike
/// `-v`, a missing bind source is an error, never created.
pub fn parse_mount(value: &str) -> Result<MountRequest> {
    let mut request = MountRequest::default();
    let mut kind = None;
    let mut destination = None;
    let mut tmpfs_size = None;
    let mut tmpfs_mode = None;
    let (mut volume_only, mut bind_only, mut tmpfs_only) = (None, None, None);
    for field in split_csv(value)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let needs_value = |v: Option<&str>| {
            v.map(str::to_string).ok_or_else(|| {
                Error::new(format!(
                    "invalid field '{field}' in --mount {value}: it must be a key=value pair"
                ))
            })
        };
        match key.as_str() {
            "type" => {
                kind = Some(match needs_value(val)?.as_str() {
                    "bind" => Kind::Bind,
                    "volume" => Kind::Volume,
                    "tmpfs" => Kind::Tmpfs,
                    other => {
                        return Err(Error::new(format!(
                            "invalid mount type \"{other}\" in --mount {value}: use type=bind, type=volume or type=tmpfs"
                        )))
                    }
                })
            }
            "source" | "src" => request.source = Some(needs_value(val)?),
            "target" | "destination" | "dst" => destination = Some(needs_value(val)?),
            "readonly" | "ro" => request.readonly = parse_bool(&key, val)?,
            "volume-nocopy" => {
                request.nocopy = parse_bool(&key, val)?;
                volume_only = Some(key.clone());
            }
            "volume-label" => {
                let label = needs_value(val)?;
                let (k, v) = label.split_once('=').unwrap_or((&label, ""));
                request.labels.insert(k.to_string(), v.to_string());
                volume_only = Some(key.clone());
            }
            "volume-driver" => {
                if needs_value(val)? != "local" {
                    return Err(Error::new(format!(
                        "--mount {value}: only the local volume driver exists here — leave volume-driver out"
                    )));
                }
                volume_only = Some(key.clone());
            }
            "tmpfs-size" => {
                tmpfs_size = Some(parse_size(&needs_value(val)?)?);
                tmpfs_only = Some(key.clone());
            }
            "tmpfs-mode" => {
                tmpfs_mode = Some(parse_mode(&needs_value(val)?)?);
                tmpfs_only = Some(key.clone());
            }
            "bind-propagation" => {
                let mode = needs_value(val)?;
                if mode != "rprivate" {
                    return Err(Error::new(format!(
                        "--mount {value}: bind-propagation={mode} is not supported: only rprivate (the default) — leave it out"
                    )));
                }
                bind_only = Some(key.clone());
            }
            "consistency" => {}
            _ => {
                return Err(Error::new(format!(
                    "unexpected key '{key}' in '{field}' of --mount {value} — see `run --help` for the fields"
                )))
            }
        }
    }
    let kind = kind.unwrap_or(Kind::Volume);
    request.kind = Some(kind);
    let wrong_field = |field: Option<String>, other: Kind| {
        field.map_or(Ok(()), |f| {
            Err(Error::new(format!(
                "invalid mount config for type \"{}\": {f} is only for type={} — in --mount {value}",
                kind.as_str(),
                other.as_str()
            )))
        })
    };
    if kind != Kind::Volume {
        wrong_field(volume_only, Kind::Volume)?;
    }
    if kind != Kind::Bind {
        wrong_field(bind_only, Kind::Bind)?;
    }
    if kind != Kind::Tmpfs {
        wrong_field(tmpfs_only, Kind::Tmpfs)?;
    }
    let Some(destination) = destination.filter(|d| !d.is_empty()) else {
        return Err(Error::new(format!(
            "target is required in --mount {value} — add target=/path/in/the/container"
        )));
    };
    request.destination = check_destination(&destination, kind)?;
    match kind {
        Kind::Bind => {
            let Some(source) = request.source.clone().filter(|s| !s.is_empty()) else {
                return Err(Error::new(format!(
                    "invalid mount config for type \"bind\": field Source must not be empty — add source=/host/path to --mount {value}"
                )));
            };
            let path = match host_path(&source) {
                Some(path) => path?,
                None => {
                    return Err(Error::new(format!(
                        "invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute"
                    )))
                }
            };
            if std::fs::symlink_metadata(&path).is_err() {
                return Err(Error::new(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    path.display()
                )));
            }
            request.source = Some(path.to_string_lossy().into_owned());
        }
        Kind::Volume => {
            if let Some(name) = request.source.as_deref().filter(|s| !s.is_empty()) {
                check_volume_name(name)?;
            } else {
                request.source = None;
            }
        }
        Kind::Tmpfs => {
            if request.source.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(Error::new(format!(
                    "invalid mount config for type \"tmpfs\": field Source must not be specified — in --mount {value}"
                )));
            }
            request.source = None;
            request.tmpfs_options = tmpfs_defaults();
            if let Some(size) = tmpfs_size {
                request.tmpfs_options.push(format!("size={size}"));
            }
            if let Some(mode) = tmpfs_mode {
                request.tmpfs_options.push(format!("mode={mode:o}"));
            }
        }
    }
    Ok(request)
}
// ANCHOR_END: parse_mount

/// Docker's tmpfs defaults: `noexec,nosuid,nodev` (and read-write).
fn tmpfs_defaults() -> Vec<String> {
    ["noexec", "nosuid", "nodev"].map(String::from).to_vec()
}

// ANCHOR: parse_tmpfs
/// `--tmpfs /path[:OPTS]`: docker's defaults (`rw,noexec,nosuid,nodev`),
/// changed by `exec`, `suid`, `dev`, `ro`, with `size=` and `mode=`.
pub fn parse_tmpfs(spec: &str) -> Result<MountRequest> {
    let (destination, options) = spec.split_once(':').unwrap_or((spec, ""));
    let destination = check_destination(destination, Kind::Tmpfs)?;
    let mut request = MountRequest {
        kind: Some(Kind::Tmpfs),
        destination,
        tmpfs_options: tmpfs_defaults(),
        ..MountRequest::default()
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        let opposite = match key {
            "exec" => Some("noexec"),
            "suid" => Some("nosuid"),
            "dev" => Some("nodev"),
            _ => None,
        };
        match key {
            "exec" | "suid" | "dev" => request.tmpfs_options.retain(|o| Some(o.as_str()) != opposite),
            "noexec" | "nosuid" | "nodev" => {
                if !request.tmpfs_options.iter().any(|o| o == key) {
                    request.tmpfs_options.push(key.to_string());
                }
            }
            "ro" => request.readonly = true,
            "rw" => request.readonly = false,
            "size" => request
                .tmpfs_options
                .push(format!("size={}", parse_size(value)?)),
            "mode" => request
                .tmpfs_options
                .push(format!("mode={:o}", parse_mode(value)?)),
            "uid" | "gid" | "nr_inodes" if value.parse::<u64>().is_ok() => {
                request.tmpfs_options.push(option.to_string())
            }
            _ => {
                return Err(Error::new(format!(
                    "--tmpfs {spec}: unknown option '{option}' — use size=, mode=, uid=, gid=, ro, exec, suid, dev"
                )))
            }
        }
    }
    Ok(request)
}
// ANCHOR_END: parse_tmpfs

/// An image's `VOLUME` entry: an anonymous volume at that path (the
/// image's path is checked as the command line's is).
pub fn image_volume(path: &str) -> Result<MountRequest> {
    let destination = check_destination(path, Kind::Volume)
        .map_err(|e| Error::new(format!("the image's VOLUME {path:?} is not usable: {e}")))?;
    Ok(MountRequest {
        kind: Some(Kind::Volume),
        destination,
        ..MountRequest::default()
    })
}

/// Two mounts on one destination are refused, as docker does.
pub fn check_duplicates(requests: &[MountRequest]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for request in requests {
        if !seen.insert(request.destination.as_str()) {
            return Err(Error::new(format!(
                "Duplicate mount point: {} — mount one thing there",
                request.destination
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(spec: &str) -> Result<MountRequest> {
        parse_volume(spec, &mut Vec::new())
    }

    fn err(result: Result<MountRequest>) -> String {
        result.expect_err("an error").to_string()
    }

    #[test]
    fn short_syntax_kinds() {
        let bind = v("/host/dir/:/data:ro").unwrap();
        assert_eq!(bind.kind(), Kind::Bind);
        assert_eq!(bind.source.as_deref(), Some("/host/dir"));
        assert_eq!(bind.destination, "/data");
        assert!(bind.readonly && bind.create_source);
        let named = v("data:/var/lib/app").unwrap();
        assert_eq!(named.kind(), Kind::Volume);
        assert_eq!(named.source.as_deref(), Some("data"));
        assert!(!named.readonly);
        let anonymous = v("/ctr/path").unwrap();
        assert_eq!((anonymous.kind(), anonymous.source), (Kind::Volume, None));
        let nocopy = v("data:/x:ro,nocopy").unwrap();
        assert!(nocopy.nocopy && nocopy.readonly);
        assert_eq!(nocopy.mode, "ro,nocopy");
        let relative = v("./rel:/x").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(relative.source.unwrap(), cwd.join("rel").to_string_lossy());
        assert_eq!(v("../up:/x").unwrap().kind(), Kind::Bind);
    }

    #[test]
    fn short_syntax_errors() {
        assert!(err(v("data")).contains("'data' mount path must be absolute"));
        assert!(err(v("a:b:c:d")).contains("invalid volume specification: 'a:b:c:d'"));
        assert!(err(v("/x:relative")).contains("'relative' mount path must be absolute"));
        assert!(err(v("x:/")).contains("destination can't be '/'"));
        assert!(err(v("x:/a/..")).contains("destination can't be '/'"));
        assert_eq!(
            err(v("x/y:/data")),
            "\"x/y\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert!(err(v("..x:/data")).contains("invalid characters"));
        assert!(err(v("a..b/c:/data")).contains("invalid characters"));
        assert!(err(v("dd:/x:rw,ro")).contains("at most once"));
        assert!(err(v("dd:/x:bogus")).contains("invalid mode: bogus"));
        assert!(err(v("dd:/x:rshared")).contains("only rprivate"));
        assert!(err(v("/h:/x:private")).contains("only rprivate"));
        assert!(v("/h:/x:rprivate,ro").unwrap().readonly);
        assert!(err(v("/h:/x:nocopy")).contains("nocopy is for volumes"));
        assert!(err(v(":/x")).contains("invalid volume specification"));
        assert!(err(v("dd:")).contains("invalid volume specification"));
        let mut warnings = Vec::new();
        assert!(parse_volume("dd:/x:z,rprivate", &mut warnings).is_ok());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("SELinux"));
    }

    #[test]
    fn long_syntax() {
        let m = parse_mount(
            "type=volume,src=data,dst=/data,readonly=false,volume-label=a=b=c,volume-nocopy",
        )
        .unwrap();
        assert_eq!(m.kind(), Kind::Volume);
        assert_eq!(m.source.as_deref(), Some("data"));
        assert!(!m.readonly && m.nocopy);
        assert_eq!(m.labels["a"], "b=c");
        let anonymous = parse_mount("target=/data").unwrap();
        assert_eq!((anonymous.kind(), anonymous.source), (Kind::Volume, None));
        let t = parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            t.tmpfs_options,
            ["noexec", "nosuid", "nodev", "size=67108864", "mode=1770"]
        );
        let bind =
            parse_mount("type=bind,\"source=/\",target=/host,ro=1,bind-propagation=rprivate")
                .unwrap();
        assert_eq!(bind.source.as_deref(), Some("/"));
        assert!(bind.readonly && !bind.create_source);
        for (field, readonly) in [
            ("readonly", true),
            ("readonly=true", true),
            ("ro=TRUE", true),
            ("ro=t", true),
            ("readonly=0", false),
            ("ro=false", false),
            ("ro=F", false),
        ] {
            let m = parse_mount(&format!("type=volume,target=/d,{field}")).unwrap();
            assert_eq!(m.readonly, readonly, "{field}");
        }
        let m = parse_mount("Type=volume,Source=vv,Destination=/d,volume-label=solo").unwrap();
        assert_eq!(
            (m.source.as_deref(), m.destination.as_str()),
            (Some("vv"), "/d")
        );
        assert_eq!(m.labels["solo"], "");
        assert_eq!(
            split_csv("a=\"x,y\",\"b=1,2\",c=\"\"\"q\"\"\"").unwrap(),
            ["a=x,y", "b=1,2", "c=\"q\""]
        );
    }

    #[test]
    fn long_syntax_errors() {
        assert!(err(parse_mount("type=nfs,dst=/x")).contains("invalid mount type \"nfs\""));
        assert_eq!(
            err(parse_mount("type=bind,src=/surely/missing/crabbox,dst=/x")),
            "invalid mount config for type \"bind\": bind source path does not exist: /surely/missing/crabbox"
        );
        assert!(err(parse_mount("type=bind,src=/")).contains("target is required"));
        assert!(err(parse_mount("type=volume,src=a/b,dst=/x")).contains("invalid characters"));
        assert!(err(parse_mount("type=tmpfs,src=x,dst=/x")).contains("must not be specified"));
        assert!(err(parse_mount("type=bind,dst=/x")).contains("Source must not be empty"));
        assert!(err(parse_mount("type=bind,src=/,dst=/x,volume-nocopy"))
            .contains("only for type=volume"));
        assert!(
            err(parse_mount("type=volume,dst=/x,tmpfs-size=1m")).contains("only for type=tmpfs")
        );
        assert!(err(parse_mount("dst=/x,bogus=1")).contains("unexpected key 'bogus'"));
        assert!(err(parse_mount("dst=/x,ro=maybe")).contains("invalid value"));
        assert!(err(parse_mount(
            "type=bind,src=/,dst=/x,bind-propagation=shared"
        ))
        .contains("only rprivate"));
        assert!(err(parse_mount(
            "type=bind,src=/,dst=/x,bind-propagation=private"
        ))
        .contains("only rprivate"));
        assert!(err(parse_mount("dst=\"/x")).contains("quote"));
        assert!(err(parse_mount("dst=relative")).contains("must be absolute"));
    }

    #[test]
    fn tmpfs_syntax() {
        let t = parse_tmpfs("/scratch").unwrap();
        assert_eq!(t.tmpfs_options, ["noexec", "nosuid", "nodev"]);
        let t = parse_tmpfs("/scratch:exec,size=1m,mode=1777,ro").unwrap();
        assert_eq!(
            t.tmpfs_options,
            ["nosuid", "nodev", "size=1048576", "mode=1777"]
        );
        assert!(t.readonly);
        assert!(err(parse_tmpfs("relative")).contains("must be absolute"));
        assert!(err(parse_tmpfs("/x:size=lots")).contains("invalid size"));
        assert!(err(parse_tmpfs("/x:bogus")).contains("unknown option"));
        assert!(err(parse_tmpfs("/")).contains("can't be '/'"));
    }

    #[test]
    fn duplicates_and_cleaning() {
        assert_eq!(clean("/a//b/./c/../"), "/a/b");
        let a = v("one:/data").unwrap();
        let b = v("/h:/data/").unwrap();
        assert_eq!(
            check_duplicates(&[a.clone(), b]).unwrap_err().to_string(),
            "Duplicate mount point: /data — mount one thing there"
        );
        assert!(check_duplicates(&[a, parse_tmpfs("/t").unwrap()]).is_ok());
        assert!(image_volume("relative").is_err());
        assert!(image_volume("/").is_err());
        assert_eq!(
            image_volume("/var/lib/app/").unwrap().destination,
            "/var/lib/app"
        );
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("m").is_err());
        assert!(parse_size("64x").is_err());
        assert!(parse_size("1bb").is_err());
    }
}
