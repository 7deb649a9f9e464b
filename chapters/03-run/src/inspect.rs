//! `inspect`: a container (or, when no container has that name, an
//! image) as JSON, with the fields of `docker inspect` this engine knows.

use crate::extension::Extension;
use crate::find::{self, Found};
use crate::logs;
use crate::state::effective_state;
use ch01_images::cli::GlobalArgs;
use ch01_images::error::Result;

/// `inspect NAME…`: a container when one has that name or ID, otherwise
/// an image, as docker does, with `extension`'s fields for a container.
/// Returns the exit code (1 if any was missing).
pub fn inspect(globals: &GlobalArgs, names: &[String], extension: &impl Extension) -> Result<i32> {
    let store = globals.store()?;
    let mut found = Vec::new();
    let mut code = 0;
    for name in names {
        if let Ok(container) = find::find(&globals.root, name) {
            let mut json = container_json(&container);
            extension.inspect(&container.config, &mut json);
            found.push(json);
        } else if let Ok(image) = store.get(name) {
            found.push(ch01_images::cli::inspect_json(&store, &image));
        } else {
            eprintln!("inspect: No such object: {name}");
            code = 1;
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&found).expect("JSON values serialize")
    );
    Ok(code)
}

/// The fields of `docker container inspect` this engine knows.
pub fn container_json(found: &Found) -> serde_json::Value {
    let config = &found.config;
    let state = effective_state(&found.dir);
    let process = &config.spec.process;
    let time = |t: Option<u64>| t.map_or("0001-01-01T00:00:00Z".to_string(), logs::rfc3339);
    let running = state.is_running();
    serde_json::json!({
        "Id": config.id,
        "Created": logs::rfc3339(config.created),
        "Path": process.args.first(),
        "Args": process.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": state.status,
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "Dead": false,
            "Pid": if running { state.pid.unwrap_or(0) } else { 0 },
            "OOMKilled": state.oom_killed,
            "ExitCode": state.exit_code.unwrap_or(0),
            "StartedAt": time(state.started),
            "FinishedAt": time(state.finished),
        },
        "Image": config.image_id,
        "LogPath": logs::log_path(&found.dir, &config.id),
        "Name": format!("/{}", config.name),
        "Mounts": config.spec.mounts.iter()
            .filter(|m| m.fstype == "bind" && !m.destination.starts_with("/etc/"))
            .map(|m| serde_json::json!({
                "Type": "bind",
                "Source": m.source,
                "Destination": m.destination,
                "RW": !m.options.iter().any(|o| o == "ro"),
            }))
            .collect::<Vec<_>>(),
        "Config": {
            "Hostname": config.spec.hostname,
            "User": process.user,
            "Env": process.env,
            "Cmd": process.args,
            "Image": config.image,
            "WorkingDir": process.cwd,
            "StopSignal": config.stop_signal,
            "StopTimeout": config.stop_timeout,
        },
        "HostConfig": {
            "AutoRemove": config.auto_remove,
            "Memory": config.spec.resources.as_ref().and_then(|r| r.memory).unwrap_or(0),
            "PidsLimit": config.spec.resources.as_ref().and_then(|r| r.pids),
            "NanoCpus": config.spec.resources.as_ref().and_then(|r| r.cpus)
                .map_or(0, |c| (c * 1e9) as u64),
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": found.dir.join("upper"),
                "WorkDir": found.dir.join("work"),
                "MergedDir": config.spec.rootfs,
            },
        },
    })
}
