//! Which user the container's process runs as: `--user` or the image's
//! USER, as `uid[:gid]` or `name[:group]`.
//!
//! Names mean nothing to the kernel, which only knows numbers. A name is
//! looked up in the *container's* /etc/passwd and /etc/group (the image's
//! users, not the host's), which is why this runs after `pivot_root`.

use std::path::Path;

/// The ids the process gets: user, primary group, supplementary groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, for HOME.
    pub home: Option<String>,
}

/// One line of /etc/passwd: name, uid, gid, home.
fn passwd_entries(etc: &Path) -> Vec<(String, u32, u32, String)> {
    let text = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                f.get(5).unwrap_or(&"/").to_string(),
            ))
        })
        .collect()
}

/// One line of /etc/group: name, gid, members.
fn group_entries(etc: &Path) -> Vec<(String, u32, Vec<String>)> {
    let text = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
        })
        .collect()
}

// ANCHOR: resolve
/// Resolves `spec` (empty = root) against the files in `etc` (the container's /etc).
pub fn resolve(spec: &str, etc: &Path) -> Result<Ids, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = passwd_entries(etc);
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.1 == uid).cloned(),
        Err(_) => Some(
            passwd
                .iter()
                .find(|e| e.0 == user)
                .cloned()
                .ok_or_else(|| {
                    format!("unable to find user {user}: no matching entries in passwd file")
                })?,
        ),
    };
    let uid = entry
        .as_ref()
        .map_or_else(|| user.parse().unwrap_or(0), |e| e.1);
    let groups_file = group_entries(etc);
    let gid = match group {
        None => entry.as_ref().map_or(0, |e| e.2),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups_file
                .iter()
                .find(|e| e.0 == g)
                .map(|e| e.1)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    // Supplementary groups: every group that lists the user by name (only
    // when no group was forced, as docker does).
    let groups = match (&entry, group) {
        (Some(e), None) => groups_file
            .iter()
            .filter(|g| g.2.contains(&e.0))
            .map(|g| g.1)
            .filter(|g| *g != gid)
            .collect(),
        _ => vec![],
    };
    Ok(Ids {
        uid,
        gid,
        groups,
        home: entry.map(|e| e.3),
    })
}
// ANCHOR_END: resolve

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_groups() {
        let etc = std::env::temp_dir().join(format!("crabbox-user-{}", std::process::id()));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\n",
        )
        .unwrap();
        let ids = |s: &str| resolve(s, &etc).unwrap();
        assert_eq!(
            ids(""),
            Ids {
                uid: 0,
                gid: 0,
                groups: vec![],
                home: Some("/root".into())
            }
        );
        assert_eq!(
            ids("alice"),
            Ids {
                uid: 1000,
                gid: 1000,
                groups: vec![10],
                home: Some("/home/alice".into())
            }
        );
        assert_eq!(ids("1000:wheel").gid, 10);
        assert_eq!(
            ids("4242"),
            Ids {
                uid: 4242,
                gid: 0,
                groups: vec![],
                home: None
            }
        );
        assert_eq!(ids("4242:7").gid, 7);
        assert!(resolve("nobody-here", &etc).is_err());
        std::fs::remove_dir_all(&etc).unwrap();
    }
}
