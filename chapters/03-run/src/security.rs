//! Docker's security options, and what each one loosens or tightens.
//!
//! A container's walls are several, each closing a different door:
//! namespaces (what it sees), capabilities (what root may do), the devices
//! cgroup (which device files it may open, see `device_cgroup`), a seccomp
//! filter (which system calls it may make, see `seccomp`), and masked
//! `/proc` paths (see `mounts`). Docker lets a user open each one on
//! purpose, and so do we, with docker's flags:
//!
//! * `--cap-add NAME` / `--cap-drop NAME` (`ALL` too): change the set of
//!   capabilities from docker's default 14;
//! * `--device /dev/HOST[:/dev/CTR[:rwm]]`: one host device, made in the
//!   container's /dev and allowed by its devices cgroup;
//! * `--security-opt seccomp=unconfined` or `seccomp=PROFILE.json`: no
//!   filter, or a profile in docker's JSON format;
//! * `--privileged`: every capability, every device, no seccomp filter, no
//!   masked paths. It is not "a bit more access": it is the host's root.
//!
//! The book uses each one to show an attack working, then failing without it.

use crate::capabilities;
use ch01_images::error::{Error, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

// ANCHOR: args
/// `run`'s security flags, with docker's names.
#[derive(Args, Clone, Debug, Default)]
pub struct SecurityArgs {
    /// Give the container every capability and device, no seccomp filter, no masked paths (the host's root: use with care)
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability (e.g. NET_ADMIN, or ALL)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container a host device: /dev/HOST[:/dev/CONTAINER[:PERMISSIONS rwm]]
    #[arg(long = "device", value_name = "DEVICE")]
    pub device: Vec<String>,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json (docker's format)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
}
// ANCHOR_END: args

/// The seccomp filter a container gets.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum SeccompChoice {
    /// Our default profile, equivalent to docker's (see `seccomp`).
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter at all.
    Unconfined,
    /// `seccomp=FILE`: a profile in docker's JSON format, kept in the
    /// container's config as read at create time (the file may change or
    /// go away afterwards; `start` and `exec` must use the same profile).
    Profile(serde_json::Value),
}

/// One host device given with `--device`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceMapping {
    /// The device's path on the host, as given.
    pub host: String,
    /// Where it appears in the container (default: the host path).
    pub container: String,
    /// `c` (character) or `b` (block).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Any of `r` (read), `w` (write), `m` (mknod), as the devices cgroup takes them.
    pub permissions: String,
}

// ANCHOR: security
/// A container's security settings, saved in its config (an old config
/// without them gets docker's defaults).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Security {
    /// `--privileged`.
    #[serde(default)]
    pub privileged: bool,
    /// The capabilities kept, as a bit mask (docker's default 14 unless
    /// `--cap-add`/`--cap-drop`/`--privileged` say otherwise).
    #[serde(default = "capabilities::default_mask")]
    pub capabilities: u64,
    /// `--device`: extra devices, made in /dev and allowed by the cgroup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// `--security-opt seccomp=…`.
    #[serde(default)]
    pub seccomp: SeccompChoice,
}
// ANCHOR_END: security

impl Default for Security {
    fn default() -> Security {
        Security {
            privileged: false,
            capabilities: capabilities::default_mask(),
            devices: Vec::new(),
            seccomp: SeccompChoice::Default,
        }
    }
}

impl SecurityArgs {
    /// Checks the flags and turns them into [`Security`]. Errors are the
    /// user's (exit 125) and nothing has been created yet.
    pub fn security(&self) -> Result<Security> {
        let mut security = Security {
            privileged: self.privileged,
            ..Security::default()
        };
        security.capabilities = if self.privileged {
            capabilities::all_mask()
        } else {
            capability_mask(&self.cap_add, &self.cap_drop)?
        };
        for text in &self.security_opt {
            security.seccomp = parse_security_opt(text, &security.seccomp)?;
        }
        if self.privileged {
            security.seccomp = SeccompChoice::Unconfined;
        }
        for text in &self.device {
            security
                .devices
                .push(crate::device_cgroup::parse_device(text)?);
        }
        Ok(security)
    }
}

/// docker's default set, plus `--cap-add`, minus `--cap-drop`; `ALL` in
/// either means every capability (drop first, then add, as docker does:
/// `--cap-drop ALL --cap-add CHOWN` keeps CHOWN alone).
pub fn capability_mask(add: &[String], drop: &[String]) -> Result<u64> {
    let mut mask = capabilities::default_mask();
    for name in drop {
        mask &= !capabilities::mask_of(name)?;
    }
    for name in add {
        mask |= capabilities::mask_of(name)?;
    }
    Ok(mask)
}

/// One `--security-opt`: only seccomp is known here.
fn parse_security_opt(text: &str, current: &SeccompChoice) -> Result<SeccompChoice> {
    let (key, value) = text.split_once(['=', ':']).unwrap_or((text, ""));
    match key {
        "seccomp" if value == "unconfined" => Ok(SeccompChoice::Unconfined),
        "seccomp" if value.is_empty() => Err(Error::new(
            "--security-opt seccomp needs a value: seccomp=unconfined or seccomp=PROFILE.json",
        )),
        "seccomp" => {
            let bytes = std::fs::read(value).map_err(|e| {
                Error::new(format!(
                    "opening seccomp profile {value}: {e} — give the path of a JSON profile in docker's format"
                ))
            })?;
            let profile: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(format!("seccomp profile {value} is not valid JSON: {e}"))
            })?;
            // Compile it once now, so a bad profile fails here and not
            // inside a half-made container.
            crate::seccomp::check_profile(&profile)
                .map_err(|e| Error::new(format!("seccomp profile {value}: {e}")))?;
            Ok(SeccompChoice::Profile(profile))
        }
        "no-new-privileges" => {
            // Always on here (see `capabilities::set_no_new_privs`).
            Ok(current.clone())
        }
        "apparmor" | "label" => Err(Error::new(format!(
            "--security-opt {text}: this engine has no AppArmor or SELinux support — leave it out"
        ))),
        _ => Err(Error::new(format!(
            "invalid --security-opt {text:?}: give seccomp=unconfined or seccomp=PROFILE.json"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cap_add_and_drop_follow_docker() {
        let default = capabilities::default_mask();
        assert_eq!(capability_mask(&[], &[]).unwrap(), default);
        let net_admin = 1 << 12;
        assert_eq!(
            capability_mask(&names(&["NET_ADMIN"]), &[]).unwrap(),
            default | net_admin
        );
        assert_eq!(
            capability_mask(&names(&["cap_net_admin"]), &[]).unwrap(),
            default | net_admin
        );
        assert_eq!(
            capability_mask(&names(&["CHOWN"]), &names(&["ALL"])).unwrap(),
            1
        );
        assert_eq!(
            capability_mask(&[], &names(&["MKNOD"])).unwrap(),
            default & !(1 << 27)
        );
        assert!(capability_mask(&names(&["FLY"]), &[]).is_err());
    }

    #[test]
    fn security_opt() {
        let current = SeccompChoice::Default;
        assert_eq!(
            parse_security_opt("seccomp=unconfined", &current).unwrap(),
            SeccompChoice::Unconfined
        );
        assert_eq!(
            parse_security_opt("seccomp:unconfined", &current).unwrap(),
            SeccompChoice::Unconfined
        );
        assert!(parse_security_opt("seccomp=/nonexistent.json", &current).is_err());
        assert!(parse_security_opt("apparmor=x", &current).is_err());
        assert!(parse_security_opt("bogus", &current).is_err());
    }

    #[test]
    fn an_old_config_gets_the_defaults() {
        let security: Security = serde_json::from_str("{}").unwrap();
        assert_eq!(security, Security::default());
    }
}
